"""Capture loss counted by request id, not by totals.

Comparing "records stored" with "requests answered" lets a lost record and a duplicated one
cancel out. `match_ids` instead says which answered request ids have no record, which have
more than one, and which records name an id nobody was answered with. The soak
(bench/soak.py), the rehearsal (bench/rehearse.py) and the capture tests all use it, so they
report the same three lists the same way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class IdMatch:
    """Answered request ids against stored records' ids; lists keep the order ids were given in."""

    answered: int
    #: answered ids with exactly one record
    stored_once: int
    #: answered ids with no record
    missing: list[str] = field(default_factory=list)
    #: ids with more than one record (answered or not) -> how many records
    duplicated: dict[str, int] = field(default_factory=dict)
    #: record ids that no answered request has (records of requests the caller did not count)
    unexpected: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        """Every answered id has exactly one record, and no record is left over."""
        return not (self.missing or self.duplicated or self.unexpected)

    def summary(self, limit: int = 5) -> str:
        """One line for an assertion message or a report: counts and the first ``limit`` ids of each list."""
        def head(ids: Iterable[str]) -> str:
            ids = list(ids)
            return f"{ids[:limit]}{' ...' if len(ids) > limit else ''}"

        return (f"{self.answered} answered: {len(self.missing)} without a record {head(self.missing)}, "
                f"{len(self.duplicated)} ids with more than one {head(f'{k} x{v}' for k, v in self.duplicated.items())}, "
                f"{len(self.unexpected)} records of ids not answered {head(self.unexpected)}")


def match_ids(answered: Iterable[str], recorded: Iterable[str]) -> IdMatch:
    """Match the request ids that were answered with the ids of the stored records.

    ``answered`` must not repeat an id (a request id the client sent twice cannot be matched to
    its records); ``recorded`` has one entry per stored record, repeats included (read the
    store without de-duplication, or duplicates are hidden before they are counted).
    """
    sent = list(answered)
    repeats = [rid for rid, n in Counter(sent).items() if n > 1]
    if repeats:
        raise ValueError(f"answered: request ids must be unique, {len(repeats)} repeat: {repeats[:5]}")
    counts = Counter(recorded)
    sent_set = set(sent)
    return IdMatch(
        answered=len(sent),
        stored_once=sum(1 for rid in sent if counts[rid] == 1),
        missing=[rid for rid in sent if rid not in counts],
        duplicated={rid: n for rid, n in counts.items() if n > 1},
        unexpected=[rid for rid in counts if rid not in sent_set],
    )
