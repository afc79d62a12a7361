"""``meta.rows_read`` and ``rows_written``: D1's row counters, estimated from SQLite's program.

**What D1 counts.** D1 (like Durable Object SQL) runs a SQLite with two extra per-statement
counters in its virtual machine. A *row read* is each cursor move that lands on a b-tree entry:
a ``Rewind``/``Last`` (one, even on an empty table), a seek (one; an equality seek that finds
nothing counts none), each ``Next``/``Prev`` that reaches another entry (a sorter's too), and
``count(*)``'s b-tree count adds the table's rows. A *row written* is each entry put into a
b-tree that is not temporary (a table row, an index entry, a schema row), each deleted row the
statement counts as a change, and the rows a ``DELETE`` without ``WHERE`` clears. A query of
several statements reports its last statement's counters.

**How flarelet gets them.** Python's ``sqlite3`` runs an unpatched SQLite, which has no such
counters and cannot report how often each instruction ran. So :class:`RowCounter` reads the
statement's program (``EXPLAIN``, cached per statement and schema version) *before* it runs,
counts the rows of every table the program scans in full (``count(*)``, also before it runs),
and after it runs multiplies what each loop does by how often it ran:

* a full scan reads every row of its table (at least one); under a ``LIMIT`` with no filter, the
  rows returned;
* an index or rowid range reads the rows it finds plus the entry that ends the range (none past
  an equality seek that finds nothing, none past the end of a range with no upper bound);
* a sort or temporary table is read back once per row put in: the rows its feeding scan visited
  when nothing filtered them, else the rows returned (or changed, for ``RETURNING``);
* a rowid lookup reads one row each time its loop comes round; a unique-index lookup reads one
  row for each row found;
* a write to the statement's own tables (row, index entry, counted delete) happens once per
  changed row; any other write (schema rows, ``sqlite_sequence``, a new index's entries) once
  per pass of its loop.

This gives D1's numbers for single-table statements (full scans, ``count(*)``, rowid and index
lookups and ranges, sorts, ``LIMIT`` without a filter), ``INSERT``/``UPDATE``/``DELETE`` with
their indexes, ``RETURNING``, ``AUTOINCREMENT``, rowid and unique-index joins, cross joins and
``CREATE``/``DROP``. Where the number depends on data the program does not show, it is an
estimate, never a guess at random: a filtered scan under ``LIMIT`` (counted as the whole table),
a range that ends at the last entry of its index (one more), joins through an automatic index or
a Bloom filter, upserts (both paths' writes), triggers and foreign-key actions (not counted).
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: SQLite's ``OPFLAG_NCHANGE`` (the op counts as a change) and ``OPFLAG_SEEKEQ`` (an
#: ``OpenRead`` whose cursor only serves equality seeks)
OPFLAG_NCHANGE = 0x01
OPFLAG_SEEKEQ = 0x02
#: ``OpenWrite``/``OpenRead`` whose root page is in a register (an index being created)
OPFLAG_P2ISREG = 0x10
#: an ``Insert`` that only reports a WITHOUT ROWID row to hooks (no b-tree write)
OPFLAG_ISNOOP = 0x40
SCHEMA_ROOT = 1

STEP_OPS = frozenset({"Next", "Prev", "SorterNext", "VNext"})
SCAN_OPENERS = frozenset({"Rewind", "Last", "Sort", "SorterSort"})
SEEK_OPS = frozenset({"SeekGE", "SeekGT", "SeekLE", "SeekLT"})
ROWID_LOOKUPS = frozenset({"SeekRowid", "NotExists"})
OPENERS = SCAN_OPENERS | SEEK_OPS | frozenset({"VFilter"})
#: ops that jump on a comparison: jumping to a loop's ``Next`` skips a row (a filter), jumping
#: past it ends a range
COMPARE_JUMPS = frozenset(
    {
        "Eq",
        "Ne",
        "Lt",
        "Le",
        "Gt",
        "Ge",
        "If",
        "IfNot",
        "IsNull",
        "NotNull",
        "IdxGT",
        "IdxGE",
        "IdxLT",
        "IdxLE",
        "IsTrue",
        "Found",
        "NotFound",
        "NoConflict",
        "IfNullRow",
        "Filter",
    }
)
#: ops whose P2 is an address they may jump to (not a register)
JUMP_OPS = (
    COMPARE_JUMPS
    | STEP_OPS
    | OPENERS
    | ROWID_LOOKUPS
    | frozenset(
        {
            "Goto",
            "Gosub",
            "Yield",
            "InitCoroutine",
            "IfPos",
            "IfNotZero",
            "DecrJumpZero",
            "Once",
            "Jump",
            "RowSetRead",
            "RowSetTest",
            "FkIfZero",
            "ElseEq",
            "MustBeInt",
            "IfNoHope",
            "IfSmaller",
            "SorterCompare",
            "SeekScan",
            "SeekHit",
            "IfSizeBetween",
            "NotFound",
            "Found",
        }
    )
)
RANGE_ENDS = frozenset({"IdxGT", "IdxGE", "IdxLT", "IdxLE", "Gt", "Ge", "Lt", "Le"})
EPHEMERAL_OPENS = frozenset({"OpenEphemeral", "OpenAutoindex", "OpenDup"})
#: tables SQLite keeps for itself: writes to them are the statement's overhead, not its rows
INTERNAL_TABLES = frozenset({"sqlite_schema", "sqlite_master", "sqlite_sequence", "sqlite_stat1", "sqlite_stat4"})


@dataclass(frozen=True)
class Op:
    addr: int
    opcode: str
    p1: int
    p2: int
    p3: int
    p4: Any
    p5: int


@dataclass(frozen=True)
class Cursor:
    """What a cursor number points at: a b-tree of the database (``table`` set) or a temporary one."""

    kind: str  # "btree", "ephemeral", "sorter", "pseudo", "vtab"
    table: str | None = None  # the table whose rows the b-tree holds (an index's table)
    seek_eq: bool = False
    new: bool = False  # the b-tree is created by this statement (its root is in a register)
    unique_columns: int = 0  # a unique index's column count (0: not a unique index)


@dataclass(frozen=True)
class BTree:
    """A b-tree of the schema: the table whose rows it holds, and whether it is a unique index."""

    table: str
    unique_columns: int = 0


def schema_btrees(rows: Sequence[Sequence[Any]]) -> dict[int, BTree]:
    """Root page -> b-tree, from ``sqlite_schema`` rows ``(rootpage, type, name, tbl_name, sql)``.

    A unique index is a PRIMARY KEY or UNIQUE constraint's (``sqlite_autoindex_*``) or a
    ``CREATE UNIQUE INDEX``; its column count comes from ``index_info`` (the caller's).
    """
    trees: dict[int, BTree] = {SCHEMA_ROOT: BTree("sqlite_schema")}
    for root, _type, _name, table, _sql, columns in rows:
        if root:
            trees[int(root)] = BTree(str(table), int(columns))
    return trees


@dataclass(frozen=True)
class Loop:
    step: Op  # the Next/Prev/SorterNext/VNext (or backward Goto) that closes the loop
    opener: Op | None  # the op that first positions the cursor
    start: int  # first address of the body
    exit: int  # where the loop goes when done

    @property
    def end(self) -> int:
        return self.step.addr


@dataclass
class Program:
    """One statement's program, with its cursors and loops."""

    ops: list[Op]
    cursor_at: dict[int, Cursor]  # address -> the cursor its op's P1 names there
    loops: list[Loop]
    parents: dict[int, int | None] = field(default_factory=dict)  # loop index -> enclosing loop index

    def scanned_tables(self) -> set[str]:
        """Tables whose size the counts need: those scanned in full and those ``count(*)``-ed."""
        tables: set[str] = set()
        for op in self.ops:
            if op.opcode in SCAN_OPENERS or op.opcode == "Count":
                cursor = self.cursor(op)
                if cursor is not None and cursor.kind == "btree" and cursor.table and not cursor.new:
                    tables.add(cursor.table)
        return tables

    def cursor(self, op: Op) -> Cursor | None:
        return self.cursor_at.get(op.addr)

    @property
    def writes_schema(self) -> bool:
        """The statement changes the schema (``CREATE``, ``DROP``, ``ALTER``)."""
        return any(
            op.opcode == "OpenWrite" and (c := self.cursor(op)) is not None and c.table == "sqlite_schema"
            for op in self.ops
        )


def _dead(ops: list[Op]) -> set[int]:
    """Addresses a D1 database never runs: the foreign-key recount skipped while no constraint
    is pending (``FkIfZero``), the root-page fix-up after a ``DROP`` that only an auto-vacuumed
    database needs (``IfNot`` on ``Destroy``'s moved page), and code jumped over."""
    moved = {op.p2 for op in ops if op.opcode == "Destroy"}
    dead: set[int] = set()
    targets = {op.p2 for op in ops if op.opcode in JUMP_OPS}
    for op in ops:
        if op.opcode == "FkIfZero" or (op.opcode == "IfNot" and op.p1 in moved):
            dead.update(range(op.addr + 1, op.p2))
        elif op.opcode == "Goto" and op.p2 > op.addr + 1:
            # code skipped by an unconditional jump that nothing else jumps into (a WITHOUT
            # ROWID table's primary key, made with the table)
            skipped = range(op.addr + 1, op.p2)
            if not any(addr in targets for addr in skipped):
                dead.update(skipped)
    return dead


def _open(op: Op, roots: dict[int, BTree]) -> Cursor | None:
    if op.opcode in ("OpenRead", "OpenWrite", "ReopenIdx"):
        new = bool(op.p5 & OPFLAG_P2ISREG)
        tree = None if new or op.p3 != 0 else roots.get(op.p2)
        return Cursor(
            "btree",
            tree.table if tree else None,
            seek_eq=bool(op.p5 & OPFLAG_SEEKEQ),
            new=new,
            unique_columns=tree.unique_columns if tree else 0,
        )
    if op.opcode in EPHEMERAL_OPENS:
        return Cursor("ephemeral")
    return {"SorterOpen": Cursor("sorter"), "OpenPseudo": Cursor("pseudo"), "VOpen": Cursor("vtab")}.get(op.opcode)


def _parse(rows: Sequence[Sequence[Any]], roots: dict[int, BTree]) -> Program:
    all_ops = [Op(int(r[0]), str(r[1]), int(r[2]), int(r[3]), int(r[4]), r[5], int(r[6] or 0)) for r in rows]
    dead = _dead(all_ops)
    ops = [op for op in all_ops if op.addr not in dead]
    # the preamble (from Init's target: start the transaction, read sqlite_sequence, load
    # constants) runs first, then jumps back to the top: cursors are resolved in that order,
    # and that last jump is no loop
    preamble = all_ops[0].p2 if all_ops and all_ops[0].opcode == "Init" and all_ops[0].p2 > 0 else len(all_ops)
    current: dict[int, Cursor] = {}
    cursor_at: dict[int, Cursor] = {}
    for op in [o for o in ops if o.addr >= preamble] + [o for o in ops if o.addr < preamble]:
        opened = _open(op, roots)
        if opened is not None:
            current[op.p1] = opened
        if op.p1 in current:
            cursor_at[op.addr] = current[op.p1]
    loops: list[Loop] = []
    for op in ops:
        if op.opcode in STEP_OPS and op.p2 <= op.addr:
            opener = next(
                (o for o in reversed(ops) if o.addr < op.p2 and o.p1 == op.p1 and o.opcode in OPENERS),
                None,
            )
            exit_ = opener.p2 if opener is not None else op.addr + 1
            loops.append(Loop(op, opener, op.p2, exit_))
        elif op.opcode == "Goto" and 0 < op.p2 <= op.addr and not (op.addr >= preamble > op.p2):
            # a co-routine's rows (multi-row VALUES, INSERT ... SELECT) or a rowid set
            loops.append(Loop(op, None, op.p2, op.addr + 1))
    program = Program(ops, cursor_at, loops)
    for i, loop in enumerate(loops):
        first = loop.opener.addr if loop.opener is not None else loop.start
        enclosing = [j for j, other in enumerate(loops) if j != i and other.start <= first and loop.end <= other.end]
        program.parents[i] = min(enclosing, key=lambda j: loops[j].end - loops[j].start) if enclosing else None
    return program


@dataclass(frozen=True)
class RowCounts:
    read: int
    written: int


@dataclass
class Estimate:
    """A program and the sizes of the tables it scans, measured before the statement ran."""

    program: Program
    sizes: dict[str, int]

    def counts(self, returned: int, changes: int) -> RowCounts:
        return _Counting(self.program, self.sizes, returned, changes).run()


def _key_fields(op: Op) -> int:
    """How many key fields a seek compares (its P4)."""
    try:
        return int(op.p4)
    except (TypeError, ValueError):
        return 0


class _Counting:
    def __init__(self, program: Program, sizes: dict[str, int], returned: int, changes: int) -> None:
        self.p = program
        self.sizes = sizes
        self.returned = returned
        self.changes = changes
        self.dml = any(
            c.kind == "btree" and not c.new and c.table not in INTERNAL_TABLES and c.table is not None
            for op in program.ops
            if op.opcode == "OpenWrite"
            for c in [program.cursor(op)]
            if c is not None
        )
        self.visits: dict[int, int] = {}

    # -- loops -----------------------------------------------------------------------------

    def _body(self, loop: Loop) -> list[Op]:
        return [op for op in self.p.ops if loop.start <= op.addr < loop.end]

    def _filtered(self, loop: Loop) -> bool:
        """A jump from the body to the loop's step skips rows: not every row visited goes on."""
        return any(op.opcode in COMPARE_JUMPS and op.p2 == loop.end for op in self._body(loop))

    def _entries(self, index: int) -> int:
        parent = self.p.parents[index]
        loop = self.p.loops[index]
        first = loop.opener.addr if loop.opener is not None else loop.start
        if parent is None or any(op.addr < first < op.p2 for op in self.p.ops if op.opcode == "Once"):
            return 1  # outermost, or built once (an IN subquery's table)
        return self._visits(parent)

    def _innermost(self, index: int) -> bool:
        return not any(parent == index for parent in self.p.parents.values())

    def _visits(self, index: int) -> int:
        """Rows the loop's body runs for, over all its entries."""
        if index not in self.visits:
            self.visits[index] = self._loop_visits(index)
        return self.visits[index]

    def _matches(self, index: int) -> int:
        """Rows an index or sort loop hands on: the rows returned (or changed) when it is last."""
        result = self.changes if self.dml else self.returned
        if self._innermost(index) or self.p.parents[index] is None:
            return result
        return result

    def _loop_visits(self, index: int) -> int:
        loop = self.p.loops[index]
        entries = self._entries(index)
        opener = loop.opener
        cursor = self.p.cursor(loop.step) if loop.step.opcode != "Goto" else None
        if opener is None or cursor is None:
            return self.changes if self.dml else self.returned
        if cursor.kind == "btree" and opener.opcode in SCAN_OPENERS:
            size = self.sizes.get(cursor.table or "", 0)
            if any(op.opcode == "Goto" and op.p2 >= loop.exit for op in self._body(loop)):
                return entries * min(size, 1)  # leaves after its first row (min() or max())
            if self.p.parents[index] is None and not self._filtered(loop) and self._limited(loop):
                return min(size, self.returned)
            return entries * size
        if cursor.kind == "sorter" or (cursor.kind == "ephemeral" and opener.opcode in SCAN_OPENERS):
            return self._fed(loop, cursor)
        return self._matches(index)

    def _limited(self, loop: Loop) -> bool:
        return any(op.opcode == "DecrJumpZero" for op in self._body(loop))

    def _fed(self, loop: Loop, cursor: Cursor) -> int:
        """Rows put into a sorter or temporary table: its feeding loop's rows if unfiltered."""
        if cursor.kind == "ephemeral" and self.dml:
            return self.changes
        feeders = [
            i
            for i, other in enumerate(self.p.loops)
            if any(
                op.opcode in ("SorterInsert", "IdxInsert", "Insert") and op.p1 == loop.step.p1
                for op in self._body(other)
            )
        ]
        inserts = [
            op for op in self.p.ops if op.opcode in ("SorterInsert", "IdxInsert", "Insert") and op.p1 == loop.step.p1
        ]
        if not feeders and inserts:
            return len(inserts)  # filled with constants (an IN list)
        if len(feeders) == 1 and not self._filtered(self.p.loops[feeders[0]]):
            return self._visits(feeders[0])
        return self.returned

    def _loop_reads(self, index: int) -> int:
        loop = self.p.loops[index]
        opener = loop.opener
        if opener is None:
            return 0  # a co-routine or rowid-set loop: its reads are its ops'
        entries = self._entries(index)
        visits = self._visits(index)
        if opener.opcode in SCAN_OPENERS or opener.opcode == "VFilter":
            # Rewind/Last/Sort land on the first entry (one read even when empty); each Next
            # that reaches another entry is one more
            if self.p.parents[index] is None:
                return max(visits, 1)
            return max(visits, entries)
        # a seek: one read per entry that lands (an equality seek that finds nothing: none),
        # each row found, and the Next that steps past the range's end
        cursor = self.p.cursor(opener)
        bounded = any(op.opcode in RANGE_ENDS and op.p2 == loop.exit for op in self._body(loop))
        found_entries = min(entries, visits)
        if cursor is not None and cursor.seek_eq:
            if cursor.unique_columns and _key_fields(opener) >= cursor.unique_columns:
                # equality on every column of a unique index: one row or none (D1's SQLite
                # plans it as a one-row lookup with no step past it)
                return found_entries
            return visits + (found_entries if bounded else 0)
        return visits + (entries if bounded else entries - found_entries)

    # -- ops outside loops or run once per pass ----------------------------------------------

    def _innermost_loop_of(self, addr: int) -> int | None:
        best: int | None = None
        for i, loop in enumerate(self.p.loops):
            if loop.start <= addr <= loop.end and (
                best is None or loop.end - loop.start < self.p.loops[best].end - self.p.loops[best].start
            ):
                best = i
        return best

    def _runs(self, op: Op) -> int:
        index = self._innermost_loop_of(op.addr)
        return 1 if index is None else self._visits(index)

    def run(self) -> RowCounts:
        read = sum(self._loop_reads(i) for i in range(len(self.p.loops)))
        openers = {loop.opener.addr for loop in self.p.loops if loop.opener is not None}
        written = 0
        for op in self.p.ops:
            cursor = self.p.cursor(op)
            if op.opcode == "Count" and cursor is not None:
                read += self.sizes.get(cursor.table or "", 0)
            elif op.opcode in ROWID_LOOKUPS:
                read += self._runs(op)
            elif op.addr not in openers and (op.opcode in SEEK_OPS or op.opcode in SCAN_OPENERS):
                # a one-row lookup (unique index) or a min()/max() that reads one entry
                if cursor is not None and cursor.seek_eq:
                    read += min(self._runs(op), self.returned if not self.dml else self.changes)
                else:
                    read += self._runs(op)
            written += self._writes(op, cursor)
        return RowCounts(read, written)

    def _writes(self, op: Op, cursor: Cursor | None) -> int:
        if op.opcode == "Clear":
            return self.changes if op.p3 else 0
        if op.opcode == "Insert":
            counted = not op.p5 & OPFLAG_ISNOOP  # a WITHOUT ROWID table's row goes in by IdxInsert
        elif op.opcode == "IdxInsert":
            counted = True
        elif op.opcode == "Delete":
            counted = bool(op.p2 & OPFLAG_NCHANGE)
        else:
            return 0
        if not counted or cursor is None or cursor.kind != "btree":
            return 0
        if self.dml and not cursor.new and cursor.table not in INTERNAL_TABLES:
            return self.changes
        return self._runs(op)


SCHEMA_KEY_SQL = (
    "SELECT (SELECT schema_version FROM pragma_schema_version), "
    "group_concat(type || ' ' || name || ' ' || rootpage || ' ' || coalesce(sql, ''), char(10)) FROM sqlite_schema"
)


#: every b-tree of the schema; a unique index with its column count
SCHEMA_BTREES_SQL = (
    "SELECT s.rootpage, s.type, s.name, s.tbl_name, s.sql, "
    "CASE WHEN s.type = 'index' AND (s.name LIKE 'sqlite\\_autoindex\\_%' ESCAPE '\\' "
    "OR upper(s.sql) LIKE 'CREATE UNIQUE INDEX%') "
    "THEN (SELECT count(*) FROM pragma_index_info(s.name)) ELSE 0 END FROM sqlite_schema AS s"
)


class RowCounter:
    """Estimates one connection's statements' D1 row counters; programs cached per schema."""

    def __init__(self, max_programs: int = 256) -> None:
        self.max_programs = max_programs
        self._programs: OrderedDict[tuple[str, str], Program] = OrderedDict()

    def prepare(
        self,
        conn: sqlite3.Connection,
        sql: str,
        params: Sequence[Any],
        internal: Callable[[str], list[tuple]],
    ) -> Estimate | None:
        """The statement's program and the sizes it needs, before it runs; ``None`` if it
        cannot be compiled here (the statement itself then reports why)."""
        if sql.lstrip()[:6].upper() == "PRAGMA":
            return None  # some pragmas act while compiling; none reads a table row by row
        # the schema's text and root pages, not its version number alone: two databases (or a
        # database before and after a rebuild) can share a version number
        key = (sql, str(internal(SCHEMA_KEY_SQL)[0]))
        program = self._programs.get(key)
        if program is None:
            try:
                rows = conn.execute("EXPLAIN " + sql, tuple(params)).fetchall()
            except (sqlite3.Error, ValueError, OverflowError):
                return None
            program = _parse(rows, schema_btrees(internal(SCHEMA_BTREES_SQL)))
            self._programs[key] = program
            if len(self._programs) > self.max_programs:
                self._programs.popitem(last=False)
        else:
            self._programs.move_to_end(key)
        sizes = {}
        for table in program.scanned_tables():
            quoted = '"' + table.replace('"', '""') + '"'
            sizes[table] = int(internal(f"SELECT count(*) FROM {quoted}")[0][0])
        return Estimate(program, sizes)
