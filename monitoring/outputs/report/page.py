"""One self-contained HTML page: plotly.js inlined, the report's data as one JSON block, and a
small script that draws the drift-over-time charts, the embedding maps (colour by any field,
hover card with the input thumbnail, click to pin) and wires charts to window sections.

No server and no network: every resource is inline (thumbnails are ``data:`` URIs).
"""

from __future__ import annotations

import html
import json
from typing import Any

CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.drift,.critical{color:#b00;font-weight:600}
.warning{color:#b60;font-weight:600}.ok{color:#070}code{background:#f5f5f5;padding:1px 4px}.small{font-size:12px;color:#555}
.mapwrap{display:flex;gap:1em;align-items:flex-start}.map{flex:1;min-width:0;height:560px}
.details{width:270px;font-size:12px;border:1px solid #ddd;padding:.5em;min-height:120px}
#hover-card{position:fixed;display:none;pointer-events:none;background:#fff;border:1px solid #888;padding:6px;
font-size:12px;box-shadow:2px 2px 6px rgba(0,0,0,.25);z-index:10;max-width:260px}
.card img,.ex img,#hover-card img{width:64px;height:64px;image-rendering:pixelated;border:1px solid #ccc;display:block;margin-bottom:3px}
.examples{display:flex;flex-wrap:wrap;gap:8px;margin:.4em 0 .8em}.ex{width:150px;font-size:11px;border:1px solid #eee;padding:4px}
.noimg{width:64px;height:64px;background:#eee;color:#888;font-size:10px;display:flex;align-items:center;justify-content:center}
.drift-chart{height:190px}select,button{font-size:13px}"""

#: The page script: everything it needs is in the ``report-data`` JSON block.
SCRIPT = r"""
(function(){
const D = JSON.parse(document.getElementById('report-data').textContent);
const PAL = ['#1f77b4','#ff7f0e','#2ca02c','#d62728','#9467bd','#8c564b','#e377c2','#17becf','#bcbd22','#7f7f7f',
             '#aec7e8','#ffbb78','#98df8a','#ff9896','#c5b0d5','#c49c94','#f7b6d2','#9edae5','#dbdb8d','#393b79'];
const CFG = {displaylogo:false, responsive:true};
function esc(s){ return String(s).replace(/[&<>"']/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c])); }
function fmt(v){ return v === null || v === undefined ? '–' : esc(v); }
function cardHtml(S, i){
  const P = S.points, th = P.thumb[i];
  let h = th ? '<img alt="input thumbnail" src="data:image/jpeg;base64,' + th + '">' : '<div class="noimg">no thumbnail</div>';
  h += '<b>' + fmt(P.rid[i]) + '</b><br>' + esc(S.datasets[P.ds[i]]) + ' · cluster ' + P.cluster[i];
  h += '<br>time: ' + fmt(P.time[i]) + '<br>prediction: ' + fmt(P.pred[i]) + ' · label: ' + fmt(P.label[i]) + ' (' + P.correct[i] + ')';
  for (const f of S.fields){ const v = P.fields[f][i]; if (v !== null) h += '<br>' + esc(f) + ': ' + esc(v); }
  return h;
}
function categorical(S, by, i){
  const P = S.points;
  if (by === 'dataset') return S.datasets[P.ds[i]];
  if (by === 'pred') return P.pred[i] === null ? 'no prediction' : 'pred ' + P.pred[i];
  if (by === 'correct') return P.correct[i];
  if (by === 'cluster') return 'cluster ' + P.cluster[i];
  return null;
}
const FIXED = {correct: '#2ca02c', wrong: '#d62728', 'no label': '#c7c7c7', baseline: '#9a9a9a'};
const state = D.spaces.map(() => ({only: null}));
function drawMap(si){
  const S = D.spaces[si], P = S.points, gd = document.getElementById('map-' + si);
  const by = document.getElementById('colorby-' + si).value, only = state[si].only;
  const idx = [];
  for (let i = 0; i < P.x.length; i++) if (only === null || P.ds[i] === 0 || P.window[i] === only) idx.push(i);
  const sym = i => P.ds[i] === 0 ? 'circle' : 'triangle-up';
  let traces = [];
  if (['dataset','pred','correct','cluster'].includes(by)){
    const groups = new Map();
    for (const i of idx){ const k = categorical(S, by, i); if (!groups.has(k)) groups.set(k, []); groups.get(k).push(i); }
    let n = 0;
    for (const [k, g] of groups){
      const col = FIXED[k] || PAL[n++ % PAL.length];
      traces.push({type:'scatter', mode:'markers', name:k, x:g.map(i => P.x[i]), y:g.map(i => P.y[i]), customdata:g,
        hoverinfo:'none', marker:{size:6, color:col, opacity:k === 'baseline' ? 0.35 : 0.75, symbol:g.map(sym)}});
    }
  } else {
    const vals = idx.map(i => P.fields[by][i]);
    traces.push({type:'scatter', mode:'markers', name:by, x:idx.map(i => P.x[i]), y:idx.map(i => P.y[i]), customdata:idx,
      hoverinfo:'none', marker:{size:6, color:vals.map(v => v === null ? NaN : v), colorscale:'Viridis', showscale:true,
      colorbar:{title:{text:by}}, opacity:0.8, symbol:idx.map(sym)}});
  }
  const title = S.projection + ' of the ' + esc(S.name) + ' embeddings (o baseline, ▲ windows)' +
    (only === null ? '' : ' — baseline + ' + esc(D.windows[only].label));
  Plotly.react(gd, traces, {title:{text:title, font:{size:13}}, hovermode:'closest', margin:{l:30,r:10,t:40,b:30},
    xaxis:{showticklabels:false, zeroline:false}, yaxis:{showticklabels:false, zeroline:false}, legend:{font:{size:11}}}, CFG);
}
function initMap(si){
  const S = D.spaces[si], gd = document.getElementById('map-' + si), card = document.getElementById('hover-card');
  drawMap(si);
  document.getElementById('colorby-' + si).addEventListener('change', () => drawMap(si));
  gd.on('plotly_hover', e => {
    const p = e.points[0], i = p.customdata;
    card.innerHTML = cardHtml(S, i); card.dataset.rid = S.points.rid[i] || ''; card.style.display = 'block';
    const ev = e.event || {clientX: 0, clientY: 0};
    card.style.left = Math.min(ev.clientX + 16, window.innerWidth - 280) + 'px';
    card.style.top = Math.min(ev.clientY + 16, window.innerHeight - 260) + 'px';
  });
  gd.on('plotly_unhover', () => { card.style.display = 'none'; });
  gd.on('plotly_click', e => {
    const i = e.points[0].customdata, det = document.getElementById('details-' + si);
    det.innerHTML = '<div class="card">' + cardHtml(S, i) + '</div>';
    const w = S.points.window[i];
    if (w >= 0) det.innerHTML += '<p><a href="#window-' + w + '">window section</a></p>';
  });
}
function showWindow(w){
  D.spaces.forEach((S, si) => { state[si].only = w; drawMap(si); });
  document.getElementById('map-section').scrollIntoView();
}
window.explorerShowWindow = showWindow;
function drawDrift(){
  for (const m of D.drift){
    const gd = document.getElementById('drift-' + m.method), x = m.labels;
    const pick = (arr, f) => arr.map((v, k) => f(k) ? v : null);
    const traces = [
      {x:x, y:m.lower, mode:'lines', line:{width:0, shape:'hvh'}, hoverinfo:'skip', showlegend:false},
      {x:x, y:m.threshold, mode:'lines', fill:'tonexty', fillcolor:'rgba(44,160,44,0.15)', line:{color:'#2ca02c', dash:'dash', width:1, shape:'hvh'},
       name:'no-drift band (calibrated threshold)', hovertemplate:'threshold %{y:.4g}<extra></extra>'},
      {x:x, y:m.statistic, mode:'lines', line:{color:'#999', width:1}, hoverinfo:'skip', showlegend:false},
    ];
    for (const [lvl, col] of [['ok','#1f77b4'],['warning','#ff7f0e'],['critical','#d62728']]){
      traces.push({x:x, y:pick(m.statistic, k => m.level[k] === lvl), mode:'markers', name:lvl, marker:{size:9, color:col},
        customdata:m.window, text:m.p_value.map(p => p === null ? '–' : p.toPrecision(2)),
        hovertemplate:'%{x}<br>statistic %{y:.4g}, p %{text}<br>click: open this window<extra>' + lvl + '</extra>'});
    }
    Plotly.newPlot(gd, traces, {title:{text:m.title, font:{size:12}, x:0}, margin:{l:50,r:10,t:28,b:30}, showlegend:m.first,
      legend:{orientation:'h', y:1.25, x:0.35, font:{size:10}}, xaxis:{type:'category'}}, CFG);
    gd.on('plotly_click', e => { location.hash = 'window-' + e.points[0].customdata; });
  }
  if (D.accuracy || D.estimated_accuracy){
    const tr = [];
    const e = D.estimated_accuracy;
    if (e){  // label-free estimate: the band as a filled area, then the estimate
      tr.push({x:e.labels, y:e.high, mode:'lines', line:{width:0}, hoverinfo:'skip', showlegend:false});
      tr.push({x:e.labels, y:e.low, mode:'lines', line:{width:0}, fill:'tonexty', fillcolor:'rgba(44,160,44,0.15)',
        hoverinfo:'skip', showlegend:false});
      tr.push({x:e.labels, y:e.estimate, mode:'lines+markers', name:'estimated (no labels)', line:{color:'#2ca02c', dash:'dash'},
        customdata:e.window, hovertemplate:'%{x}<br>estimated accuracy %{y:.2f}<extra></extra>'});
    }
    const a = D.accuracy;
    if (a) tr.push({x:a.labels, y:a.accuracy, mode:'lines+markers', name:'realized (actuals)', line:{color:'#9467bd'}, customdata:a.window,
      text:a.n_labeled, hovertemplate:'%{x}<br>accuracy %{y:.2f} (n=%{text})<extra></extra>'});
    Plotly.newPlot('accuracy-chart', tr,
      {margin:{l:50,r:10,t:10,b:30}, yaxis:{range:[0,1.05], title:{text:'accuracy'}}, xaxis:{type:'category'},
       legend:{orientation:'h', y:1.15, font:{size:10}}}, CFG);
    document.getElementById('accuracy-chart').on('plotly_click', e => { location.hash = 'window-' + e.points[0].customdata; });
  }
}
drawDrift();
D.spaces.forEach((S, si) => initMap(si));
document.body.dataset.ready = '1';
})();
"""


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """An HTML table: ``headers`` escaped here; cells are inserted as given (already HTML)."""
    th = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    trs = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def script_block(plotly_js: str) -> str:
    return f"<script>{plotly_js}</script>"


def data_block(data: dict[str, Any]) -> str:
    # "</" cannot appear inside the JSON (it would close the script element early)
    text = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return f"<script type='application/json' id='report-data'>{text}</script>"


def document(title: str, body: str, data: dict[str, Any]) -> str:
    from plotly.offline import get_plotlyjs

    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style>{script_block(get_plotlyjs())}</head><body>{body}<div id='hover-card'></div>"
            f"{data_block(data)}<script>{SCRIPT}</script></body></html>")
