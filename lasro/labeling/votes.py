"""The durable record of people's pairwise choices: a SQLite file in the label folder.

Why SQLite: every vote is its own committed transaction (WAL journal, ``synchronous=FULL``) before the app
answers, so a crash, a Ctrl-C or a killed server loses no vote that the page showed as recorded, and
several processes (the app, the trainer waiting for votes, an export) may open the file at once.

A *pair* is two images of the same prompt (``image_0``, ``image_1``: file names in the folder's
``images/``) waiting for a choice. A *vote* is one of ``left`` (image_0 is better), ``right``, ``tie`` or
``skip``; the latest vote on a pair counts, and ``undo`` removes the latest vote of all.

Export format (one JSON object per line, close to Pick-a-Pic's): ``pair_id``, ``caption`` (the prompt),
``image_0``, ``image_1`` (paths relative to the label folder), ``label_0``, ``label_1`` (1/0 for a
preference, 0.5/0.5 for a tie), ``batch``. Skipped pairs are not exported; unvoted ones neither.
"""
from __future__ import annotations

import functools
import json
import os
import re
import sqlite3
import threading
import time
from dataclasses import dataclass

CHOICES = ("left", "right", "tie", "skip")
DB_FILE = "votes.sqlite"
IMAGES = "images"
# pair ids and image names travel in URLs and file paths: a safe alphabet only
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
LABELS = {"left": (1.0, 0.0), "right": (0.0, 1.0), "tie": (0.5, 0.5)}
CHOICE_OF_LABELS = {labels: choice for choice, labels in LABELS.items()}

SCHEMA = """
CREATE TABLE IF NOT EXISTS pairs (
    pair_id TEXT PRIMARY KEY,
    batch TEXT NOT NULL,
    prompt TEXT NOT NULL,
    image_0 TEXT NOT NULL,
    image_1 TEXT NOT NULL,
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS votes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    pair_id TEXT NOT NULL REFERENCES pairs(pair_id),
    choice TEXT NOT NULL CHECK (choice IN ('left', 'right', 'tie', 'skip')),
    time REAL NOT NULL,
    undone INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS votes_by_pair ON votes (pair_id, undone);
CREATE TABLE IF NOT EXISTS consumed (batch TEXT PRIMARY KEY);
"""


def locked(method):
    """One store call at a time: a transaction belongs to the whole sqlite connection, which the app's
    request threads and the trainer share."""
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)
    return call


class VoteError(ValueError):
    """Bad input to the vote store (an unknown pair, a bad choice or name); the message says which."""


@dataclass(frozen=True)
class Pair:
    pair_id: str
    batch: str
    prompt: str
    image_0: str
    image_1: str


def check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not SAFE_NAME.match(name):
        raise VoteError(f"{what} {name!r} is not a safe name: use letters, digits, '_', '.', '-' (at most 128, "
                        "not starting with '.' or '-')")
    return name


class VoteStore:
    """Pairs and votes of one label folder (``DIR/votes.sqlite``, images in ``DIR/images/``)."""

    def __init__(self, folder: str):
        self.folder = os.path.abspath(folder)
        self.images = os.path.join(self.folder, IMAGES)
        os.makedirs(self.images, exist_ok=True)
        self.path = os.path.join(self.folder, DB_FILE)
        # one connection per store, shared by the app's threads: every method holds self.lock (``locked``)
        self.lock = threading.RLock()
        self.db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    @locked
    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> VoteStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # pairs -----------------------------------------------------------------------------------------------
    @locked
    def add_pairs(self, pairs: list[Pair]) -> None:
        """Queue pairs for labelling (one transaction); a pair id already queued is an error."""
        for p in pairs:
            check_name(p.pair_id, "pair id")
            check_name(p.image_0, "image")
            check_name(p.image_1, "image")
            for name in (p.image_0, p.image_1):
                if not os.path.isfile(os.path.join(self.images, name)):
                    raise VoteError(f"pair {p.pair_id}: image {name} is not in {self.images}; write the images "
                                    "before queueing their pair")
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            start = self.db.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM pairs").fetchone()[0]
            try:
                self.db.executemany(
                    "INSERT INTO pairs (pair_id, batch, prompt, image_0, image_1, seq) VALUES (?, ?, ?, ?, ?, ?)",
                    [(p.pair_id, p.batch, p.prompt, p.image_0, p.image_1, start + i) for i, p in enumerate(pairs)])
            except sqlite3.IntegrityError as e:
                raise VoteError(f"a pair id is already queued in {self.path}: {e}") from None

    @locked
    def pair(self, pair_id: str) -> Pair:
        row = self.db.execute("SELECT pair_id, batch, prompt, image_0, image_1 FROM pairs WHERE pair_id = ?",
                              (pair_id,)).fetchone()
        if row is None:
            raise VoteError(f"no pair {pair_id!r} in this label folder")
        return Pair(*row)

    @locked
    def next_pending(self) -> Pair | None:
        """The oldest queued pair without a vote, or None."""
        row = self.db.execute(
            "SELECT pair_id, batch, prompt, image_0, image_1 FROM pairs p WHERE NOT EXISTS "
            "(SELECT 1 FROM votes v WHERE v.pair_id = p.pair_id AND v.undone = 0) ORDER BY seq LIMIT 1").fetchone()
        return None if row is None else Pair(*row)

    # votes -----------------------------------------------------------------------------------------------
    @locked
    def vote(self, pair_id: str, choice: str) -> None:
        """Record a choice, committed to disk before this returns."""
        if choice not in CHOICES:
            raise VoteError(f"choice {choice!r} is not one of {', '.join(CHOICES)}")
        self.pair(pair_id)
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("UPDATE votes SET undone = 1 WHERE pair_id = ? AND undone = 0", (pair_id,))
            self.db.execute("INSERT INTO votes (pair_id, choice, time) VALUES (?, ?, ?)",
                            (pair_id, choice, time.time()))

    @locked
    def undo(self) -> str | None:
        """Withdraw the latest standing vote of a batch not yet trained on; its pair is pending again. Returns
        that pair's id (None: nothing to undo)."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            row = self.db.execute(
                "SELECT v.seq, v.pair_id FROM votes v JOIN pairs p ON p.pair_id = v.pair_id WHERE v.undone = 0 "
                "AND p.batch NOT IN (SELECT batch FROM consumed) ORDER BY v.seq DESC LIMIT 1").fetchone()
            if row is None:
                return None
            self.db.execute("UPDATE votes SET undone = 1 WHERE seq = ?", (row[0],))
            return row[1]

    @locked
    def mark_consumed(self, batch: str) -> None:
        """The trainer has used ``batch``'s votes: undo no longer reaches them."""
        with self.db:
            self.db.execute("INSERT OR IGNORE INTO consumed (batch) VALUES (?)", (batch,))

    @locked
    def choices(self, batch: str | None = None) -> dict[str, str]:
        """pair id -> standing choice, for one batch or all."""
        sql = ("SELECT v.pair_id, v.choice FROM votes v JOIN pairs p ON p.pair_id = v.pair_id WHERE v.undone = 0"
               + (" AND p.batch = ?" if batch is not None else ""))
        return dict(self.db.execute(sql, (batch,) if batch is not None else ()).fetchall())

    @locked
    def progress(self, batch: str | None = None) -> tuple[int, int]:
        """(voted, queued) pairs, for one batch or all."""
        where = " WHERE batch = ?" if batch is not None else ""
        args = (batch,) if batch is not None else ()
        total = self.db.execute("SELECT COUNT(*) FROM pairs" + where, args).fetchone()[0]
        return len(self.choices(batch)), total

    @locked
    def pair_numbers(self, batch: str) -> dict[str, int]:
        """pair id -> its queue position (unique in the folder, never reused), for one batch."""
        return dict(self.db.execute("SELECT pair_id, seq FROM pairs WHERE batch = ?", (batch,)).fetchall())

    @locked
    def pairs(self, batch: str | None = None) -> list[Pair]:
        where = " WHERE batch = ?" if batch is not None else ""
        rows = self.db.execute("SELECT pair_id, batch, prompt, image_0, image_1 FROM pairs" + where + " ORDER BY seq",
                               (batch,) if batch is not None else ()).fetchall()
        return [Pair(*r) for r in rows]

    def wait_for(self, batch: str, timeout: float | None = None, poll: float = 0.5, on_progress=None,
                 should_stop=None) -> dict[str, str]:
        """Block until every pair of ``batch`` has a vote; its choices. ``on_progress(voted, total)`` is called
        whenever the count changes; a ``timeout`` (seconds) raises TimeoutError naming what is missing;
        ``should_stop()`` true (a stop request) raises InterruptedError."""
        start, seen = time.monotonic(), None
        total = len(self.pairs(batch))
        while True:
            choices = self.choices(batch)  # one read: an undo between two reads cannot split them
            voted = len(choices)
            if (voted, total) != seen:
                seen = (voted, total)
                if on_progress is not None:
                    on_progress(voted, total)
            if voted >= total:
                return choices
            if should_stop is not None and should_stop():
                raise InterruptedError(f"stopped while {total - voted} of {total} pairs of batch {batch} wait "
                                       "for a vote")
            if timeout is not None and time.monotonic() - start > timeout:
                raise TimeoutError(f"{total - voted} of {total} pairs of batch {batch} still have no vote after "
                                   f"{timeout:.0f} s; open the label app and vote, or raise the timeout")
            time.sleep(poll)

    # exchange ----------------------------------------------------------------------------------------------
    @locked
    def export_jsonl(self, path: str) -> int:
        """Write the standing preferences and ties (not skips) as JSON lines; returns how many."""
        choices = self.choices()
        n = 0
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for p in self.pairs():
                c = choices.get(p.pair_id)
                if c not in LABELS:
                    continue
                l0, l1 = LABELS[c]
                f.write(json.dumps({"pair_id": p.pair_id, "batch": p.batch, "caption": p.prompt,
                                    "image_0": f"{IMAGES}/{p.image_0}", "image_1": f"{IMAGES}/{p.image_1}",
                                    "label_0": l0, "label_1": l1}) + "\n")
                n += 1
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return n

    @locked
    def import_jsonl(self, path: str, source_folder: str | None = None) -> int:
        """Add the votes of an export: a pair queued here without a vote takes the exported vote (a copy of
        this folder was labelled elsewhere); a new pair is added with its images (copied from
        ``source_folder``, default the file's folder); a pair already voted here keeps its vote. Returns
        how many votes were added."""
        import shutil

        source_folder = os.path.dirname(os.path.abspath(path)) if source_folder is None else source_folder
        known = {p.pair_id for p in self.pairs()}
        voted = set(self.choices())
        added = 0
        with open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    pair_id, prompt = str(row["pair_id"]), str(row["caption"])
                    labels = (float(row["label_0"]), float(row["label_1"]))
                    images = [str(row["image_0"]), str(row["image_1"])]
                except (ValueError, KeyError, TypeError) as e:
                    raise VoteError(f"{path}:{line_no}: not a vote line ({type(e).__name__}: {e}); each line needs "
                                    "pair_id, caption, image_0, image_1, label_0, label_1") from None
                choice = CHOICE_OF_LABELS.get(labels)
                if choice is None:
                    raise VoteError(f"{path}:{line_no}: labels {labels} are not (1, 0), (0, 1) or (0.5, 0.5)")
                if pair_id in known:  # queued here (a copy of this folder was labelled elsewhere): its vote counts
                    if pair_id not in voted:
                        self.vote(pair_id, choice)
                        voted.add(pair_id)
                        added += 1
                    continue
                names = []
                for k, rel in enumerate(images):
                    ext = os.path.splitext(rel)[1].lower() or ".png"
                    name = check_name(f"imported-{pair_id}-{k}{ext}", "image")
                    src = os.path.realpath(os.path.join(source_folder, rel))
                    if not src.startswith(os.path.realpath(source_folder) + os.sep):
                        raise VoteError(f"{path}:{line_no}: image path {rel!r} leaves {source_folder}")
                    if not os.path.isfile(src):
                        raise VoteError(f"{path}:{line_no}: image {src} not found")
                    shutil.copyfile(src, os.path.join(self.images, name))
                    names.append(name)
                self.add_pairs([Pair(pair_id, str(row.get("batch", "imported")), prompt, names[0], names[1])])
                self.vote(pair_id, choice)
                known.add(pair_id)
                voted.add(pair_id)
                added += 1
        return added
