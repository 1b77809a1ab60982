"""Votes in SQLite: one row per (rater, pair), written in order, committed before the next pair is shown.

- WAL journal with `synchronous=FULL`: a vote whose request returned survives the server being killed (and a power
  cut); `wal_autocheckpoint=1` copies every commit into the main file at once, so the file a DVC stage hashes
  holds every vote.
- The database belongs to one study build: its fingerprint is stored on creation and a database of another build
  is refused (votes on other videos must never be mixed in).
- `add` checks and writes in one `BEGIN IMMEDIATE` transaction: a rater's vote for position k is accepted only
  when the rater has exactly k votes, so a repeated vote or a vote for a pair not yet shown writes nothing,
  whatever the number of servers or threads.
- No personal data: a rater is the opaque id the build issued; a vote stores the pair, which side was left, the
  choice and the UTC time it was recorded.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sara.errors import BadDataError, MissingDataError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS votes (
    rater TEXT NOT NULL,
    position INTEGER NOT NULL,  -- index of the pair in the rater's plan
    pair TEXT NOT NULL,
    left_side TEXT NOT NULL CHECK (left_side IN ('a', 'b')),
    choice TEXT NOT NULL CHECK (choice IN ('left', 'tie', 'right')),
    voted_at TEXT NOT NULL,
    PRIMARY KEY (rater, position),
    UNIQUE (rater, pair)
);
"""


@dataclass(frozen=True)
class Vote:
    rater: str
    position: int
    pair: str
    left_side: str
    choice: str
    voted_at: str


class OutOfTurn(Exception):
    """A vote for a position the rater is not at: already voted (`repeated`) or not yet shown."""

    def __init__(self, repeated: bool) -> None:
        super().__init__("this pair was already rated" if repeated else "this pair has not been shown yet")
        self.repeated = repeated


class VoteStore:
    """The votes database of one study build (`fingerprint`), safe to share between threads."""

    def __init__(self, path: str | Path, fingerprint: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        try:
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise BadDataError(f"{self.path}: SQLite cannot use a write-ahead log here (journal mode {mode})")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA wal_autocheckpoint=1")
            self._db.executescript(SCHEMA)
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('fingerprint', ?)", (fingerprint,))
            stored = self._db.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()[0]
        except sqlite3.DatabaseError as err:
            self._db.close()
            raise BadDataError(f"{self.path}: not a votes database ({err})") from None
        if stored != fingerprint:
            self._db.close()
            raise BadDataError(f"{self.path} holds votes of another study build ({stored[:12]}, this one is "
                               f"{fingerprint[:12]}): give this build a new database (study.db)")

    def count(self, rater: str) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM votes WHERE rater = ?", (rater,)).fetchone()[0]

    def add(self, rater: str, position: int, pair: str, left_side: str, choice: str) -> Vote:
        """Record the vote at `position` of the rater's plan, or raise OutOfTurn and write nothing."""
        vote = Vote(rater, position, pair, left_side, choice, datetime.now(timezone.utc).isoformat(timespec="seconds"))
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                n = self._db.execute("SELECT COUNT(*) FROM votes WHERE rater = ?", (rater,)).fetchone()[0]
                if n != position:
                    raise OutOfTurn(repeated=position < n)
                self._db.execute("INSERT INTO votes VALUES (?, ?, ?, ?, ?, ?)",
                                 (vote.rater, vote.position, vote.pair, vote.left_side, vote.choice, vote.voted_at))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")  # durable (synchronous=FULL) before the caller shows the next pair
        return vote

    def votes(self) -> list[Vote]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM votes ORDER BY rater, position").fetchall()
        return [Vote(*r) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def read_votes(path: str | Path, fingerprint: str) -> list[Vote]:
    """Every vote of an existing database of this build (opened as the server opens it, never created here)."""
    if not Path(path).is_file():
        raise MissingDataError(f"votes database {path} not found: people vote through `sara study serve` (study.db)")
    store = VoteStore(path, fingerprint)
    try:
        return store.votes()
    finally:
        store.close()
