"""The load tester's overload figures: refusals apart from timeouts, work for nobody, the queue after."""

from __future__ import annotations

from bench.loadtest.report import plot_overload
from bench.loadtest.runner import RequestRecord, overload_summary, queue_after
from bench.loadtest.stats import pending_from_metrics
from bench.loadtest.transports import classify_error


def test_refusals_are_classified_before_timeouts():
    assert classify_error("StatusCode.UNAVAILABLE", "Request timeout expired") == "refused"
    assert classify_error("503", "[request id: <id_unknown>] Exceeds maximum queue size") == "refused"
    assert classify_error("UNAVAILABLE", "request expired: its deadline (deadline_ms 1) passed 3 ms before") == "refused"
    assert classify_error("503", "out of memory while running the pipeline") == "unavailable"
    assert classify_error("DEADLINE_EXCEEDED", "Deadline Exceeded") == "timeout"


def _rec(i, error=None, attempts=1, refusals=(), expired=0):
    return RequestRecord(i, 0.0, 0.0, 1.0, error, None, attempts=attempts, refusal_latencies=refusals,
                         expired_answers=expired)


def test_overload_summary_counts_refusals_timeouts_and_work_for_nobody():
    recs = [_rec(0), _rec(1, attempts=3, refusals=(0.002, 0.004)), _rec(2, "refused", 2, (0.001, 0.003)),
            _rec(3, "timeout"), _rec(4, "internal")]
    s = overload_summary(recs, ok=2, server={"success_count": 4})  # 2 ok + 1 internal error answer + 1 late
    assert (s["refused"], s["timeouts"], s["other_errors"]) == (1, 1, 1)
    assert (s["attempts"], s["refused_attempts"], s["ok_after_retry"]) == (8, 4, 1)
    assert s["refusal_latency_ms"]["max"] == 4.0
    assert (s["server_successes"], s["work_for_nobody"], s["work_for_nobody_fraction"]) == (4, 1, 0.25)
    assert overload_summary(recs, 2, None)["work_for_nobody"] is None
    # Answers the runtime gave without computing (an expired deadline, its own errors) are
    # successes in Triton's statistics, not work for nobody.
    recs.append(_rec(5, "refused", 2, (0.001, 0.002), expired=2))
    s = overload_summary(recs, ok=2, server={"success_count": 6})
    assert (s["expired_answers"], s["work_for_nobody"]) == (2, 1)  # 6 - 2 ok - 2 expired - 1 internal


def test_pending_count_from_triton_metrics_and_queue_times_after_the_load():
    text = ('# TYPE nv_inference_pending_request_count gauge\n'
            'nv_inference_pending_request_count{model="sd_img2img",version="1"} 3\n'
            'nv_inference_pending_request_count{model="resnet_classifier",version="1"} 9\n')
    assert pending_from_metrics(text, "sd_img2img") == 3
    assert pending_from_metrics(text, "sd_depth") is None
    q = queue_after({"pending_at_end": 3, "settle_started_at": 12.0, "drained_at": 12.5, "idle_at": None}, 10.0)
    assert q == {"pending_at_end": 3, "last_answer_after_load_s": 2.0, "drained_after_load_s": 2.5,
                 "idle_after_load_s": None, "drained_after_last_answer_s": 0.5, "idle_after_last_answer_s": None}


def test_overload_plot_is_written(tmp_path):
    steps = [{"mode": "rate", "target_rps": r, "throughput_rps": g, "duration_s": 15.0,
              "server": {"success_count": int(g * 15)}, "overload": {"refused": f, "timeouts": 0, "work_for_nobody": 1}}
             for r, g, f in ((8, 7.9, 0), (32, 7.5, 300))]
    path = tmp_path / "overload.png"
    plot_overload(steps, path, "sd_img2img")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
