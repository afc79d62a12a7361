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
statement's program (``EXPLAIN``, cached per connection, schema version and SQL) *before* it runs,
counts the rows of every table the program scans in full (``count(*)``, also before it runs), and
after it runs multiplies what each loop does by how often it ran:

* a full scan reads every row of its table (at least one); under a ``LIMIT`` with no filter, the
  rows returned; a ``min()``/``max()`` that stops at its first entry, one;
* an index or rowid range reads the rows it finds plus the entry that ends the range (none past
  an equality seek that finds nothing, none past the end of a range with no upper bound); an
  equality on every column of a unique index reads the row found, nothing more;
* a sort or temporary table is read back once per row put in: the rows its feeding scan visited
  when nothing filtered them, the constants of an ``IN`` list, else the rows returned (or
  changed, for ``RETURNING`` and ``INSERT ... SELECT``);
* ``count(*)`` reads the rows it answers; a rowid lookup reads one row each time its loop comes
  round;
* a write to the statement's own tables (row, index entry, counted delete) happens once per
  changed row; any other write (schema rows, ``sqlite_sequence``, a new index's entries) once
  per pass of its loop. Code a D1 database never runs (the foreign-key recount while none is
  pending, the auto-vacuum root-page fix-up of a ``DROP``) counts nothing.

Checked against workerd's counters (through Miniflare) on 125 statements, 105 agree exactly. The
rest are estimates where the number depends on data the program does not show: a range that ends
at its index's last entry (one more), a scan with a filter that stops at its ``LIMIT`` (the rows
returned: D1 counts the rows it scanned until then), an
index range under a further filter or an aggregate other than ``count(*)`` (the rows returned),
``OR`` over two indexes,
``LEFT JOIN``/``EXISTS``/automatic-index joins, upserts (both paths' writes), ``ORDER BY ... LIMIT``
(one more), triggers and foreign-key actions (not counted); and ``CREATE INDEX`` on a table with
rows, where workerd's newer SQLite reads two rows more.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from flarelet.bindings.d1.program import (
    COMPARE_JUMPS,
    INTERNAL_TABLES,
    OPFLAG_ISNOOP,
    OPFLAG_NCHANGE,
    RANGE_ENDS,
    ROWID_LOOKUPS,
    SCAN_OPENERS,
    SEEK_OPS,
    BTree,
    Cursor,
    Loop,
    Op,
    Program,
    parse_program,
    schema_btrees,
)


@dataclass(frozen=True)
class RowCounts:
    read: int
    written: int


@dataclass
class Estimate:
    """A statement's program, what it does, and the sizes of the tables it scans (measured
    before the statement ran)."""

    program: Program
    shape: _Shape
    sizes: dict[str, int]

    def counts(self, rows: Sequence[Sequence[Any]], changes: int) -> RowCounts:
        """The counters once the statement has run: the rows it returned, the rows it changed."""
        return _Counting(self.shape, self.sizes, len(rows), changes, rows[0] if rows else None).run()


def _key_fields(op: Op) -> int:
    """How many key fields a seek compares (its P4)."""
    try:
        return int(op.p4)
    except (TypeError, ValueError):
        return 0


@dataclass(frozen=True)
class _LoopShape:
    """What a loop does, read once from the program: the counting only multiplies."""

    loop: Loop
    parent: int | None
    cursor: Cursor | None  # the cursor it steps (None for a co-routine or rowid-set loop)
    once: bool  # built once whatever encloses it (an IN subquery's table)
    filtered: bool  # a jump to its step skips rows
    limited: bool  # a LIMIT counter inside
    limit: int | None  # that LIMIT, when the program holds it as a constant
    early_exit: bool  # leaves after its first row (min() or max())
    bounded: bool  # a range with an upper end
    feeders: tuple[int, ...]  # loops that fill the sorter or temporary table it reads
    constant_inserts: int  # rows put into that table outside any loop (an IN list)
    counted_by: int | None  # the result column of a count(*) that steps once per row it visits


@dataclass(frozen=True)
class _Shape:
    loops: tuple[_LoopShape, ...]
    innermost: frozenset[int]  # loops with no loop inside
    dml: bool  # writes rows of the database's own tables
    reads: tuple[tuple[str, Cursor | None, Op, int | None], ...]  # one-off reads and the loop they run in
    writes: tuple[tuple[str, Cursor | None, int | None], ...]  # counted writes and the loop they run in
    counted_columns: dict[int, int]  # count(*) ops whose count is a result column


def _limit(p: Program, body: list[Op]) -> int | None:
    counter = next((op.p1 for op in body if op.opcode == "DecrJumpZero"), None)
    if counter is None:
        return None
    return next((op.p1 for op in p.ops if op.opcode == "Integer" and op.p2 == counter), None)


_INSERTING = frozenset({"SorterInsert", "IdxInsert", "Insert"})
_READ_OPS = frozenset({"Count"}) | ROWID_LOOKUPS | SEEK_OPS | SCAN_OPENERS
_WRITE_OPS = frozenset({"Clear", "Insert", "IdxInsert", "Delete"})


def _shape(p: Program) -> _Shape:
    # each address's innermost loop, and each loop's body, in one pass over the loops
    loop_of: dict[int, int] = {}
    bodies: list[list[Op]] = []
    for i, loop in enumerate(p.loops):
        bodies.append([op for op in p.ops if loop.start <= op.addr < loop.end])
        for addr in range(loop.start, loop.end + 1):
            best = loop_of.get(addr)
            if best is None or loop.end - loop.start < p.loops[best].end - p.loops[best].start:
                loop_of[addr] = i
    onces = [(op.addr, op.p2) for op in p.ops if op.opcode == "Once"]
    filled: list[set[int]] = [{op.p1 for op in ops if op.opcode in _INSERTING} for ops in bodies]
    counted_steps = p.counted_steps
    loops = []
    for i, loop in enumerate(p.loops):
        ops = bodies[i]
        first = loop.opener.addr if loop.opener is not None else loop.start
        target = loop.step.p1
        loops.append(
            _LoopShape(
                loop=loop,
                parent=p.parents[i],
                cursor=p.cursor(loop.step) if loop.step.opcode != "Goto" else None,
                once=any(a < first < b for a, b in onces),
                filtered=any(op.opcode in COMPARE_JUMPS and op.p2 == loop.end for op in ops),
                limited=any(op.opcode == "DecrJumpZero" for op in ops),
                limit=_limit(p, ops),
                early_exit=any(op.opcode == "Goto" and op.p2 >= loop.exit for op in ops),
                bounded=any(op.opcode in RANGE_ENDS and op.p2 == loop.exit for op in ops),
                feeders=tuple(j for j in range(len(p.loops)) if target in filled[j]),
                constant_inserts=sum(
                    1 for op in p.ops if op.opcode in _INSERTING and op.p1 == target and op.addr not in loop_of
                ),
                counted_by=next(
                    (column for addr, column in counted_steps.items() if loop_of.get(addr) == i),
                    None,
                ),
            )
        )
    openers = {loop.opener.addr for loop in p.loops if loop.opener is not None}
    reads: list[tuple[str, Cursor | None, Op, int | None]] = []
    writes: list[tuple[str, Cursor | None, int | None]] = []
    dml = False
    for op in p.ops:
        opcode = op.opcode
        if opcode not in _READ_OPS and opcode not in _WRITE_OPS and opcode != "OpenWrite":
            continue
        cursor = p.cursor(op)
        where = loop_of.get(op.addr)
        if opcode == "OpenWrite":
            dml = dml or (
                cursor is not None
                and cursor.kind == "btree"
                and not cursor.new
                and cursor.table is not None
                and cursor.table not in INTERNAL_TABLES
            )
        elif opcode == "Count":
            reads.append(("count", cursor, op, None))
        elif opcode in ROWID_LOOKUPS:
            reads.append(("lookup", cursor, op, where))
        elif op.addr not in openers and (opcode in SEEK_OPS or opcode in SCAN_OPENERS):
            # a one-row lookup (unique index) or a min()/max() that reads one entry
            reads.append(("seek_eq" if cursor is not None and cursor.seek_eq else "lookup", cursor, op, where))
        elif opcode == "Clear":
            if op.p3:
                writes.append(("clear", cursor, where))
        elif (
            cursor is not None
            and cursor.kind == "btree"
            and (
                (opcode == "Insert" and not op.p5 & OPFLAG_ISNOOP)  # WITHOUT ROWID rows go in by IdxInsert
                or opcode == "IdxInsert"
                or (opcode == "Delete" and op.p2 & OPFLAG_NCHANGE)
            )
        ):
            writes.append(("write", cursor, where))
    parents = {shape.parent for shape in loops}
    innermost = frozenset(i for i in range(len(loops)) if i not in parents)
    return _Shape(tuple(loops), innermost, dml, tuple(reads), tuple(writes), p.counted_columns)


class _Counting:
    """One run's counts: the program's shape times the sizes, rows returned and rows changed."""

    def __init__(
        self, shape: _Shape, sizes: dict[str, int], returned: int, changes: int, first_row: Sequence[Any] | None
    ) -> None:
        self.s = shape
        self.first_row = first_row
        self.sizes = sizes
        self.returned = returned
        self.changes = changes
        self.result = changes if shape.dml else returned  # rows an index or sort loop hands on
        self.visits: dict[int, int] = {}

    def _entries(self, index: int) -> int:
        loop = self.s.loops[index]
        if loop.parent is None or loop.once:
            return 1
        return self._visits(loop.parent)

    def _visits(self, index: int) -> int:
        """Rows the loop's body runs for, over all its entries."""
        if index not in self.visits:
            self.visits[index] = self._loop_visits(index)
        return self.visits[index]

    def _loop_visits(self, index: int) -> int:
        shape = self.s.loops[index]
        opener, cursor = shape.loop.opener, shape.cursor
        if opener is None or cursor is None:
            return self.result
        if cursor.kind == "btree" and opener.opcode in SCAN_OPENERS:
            size = self.sizes.get(cursor.table or "", 0)
            entries = self._entries(index)
            if shape.early_exit:
                return entries * min(size, 1)
            if shape.parent is None and shape.limited:
                if not shape.filtered:
                    return min(size, self.returned)
                if shape.limit is None or self.returned >= shape.limit:
                    # stopped at its LIMIT somewhere in the table: at least the rows returned
                    return max(self.returned, 1)
            return entries * size
        if cursor.kind == "sorter" or (cursor.kind == "ephemeral" and opener.opcode in SCAN_OPENERS):
            return self._fed(shape)
        if shape.counted_by is not None and not shape.filtered and self.first_row:
            value = self.first_row[shape.counted_by] if shape.counted_by < len(self.first_row) else None
            if isinstance(value, int):
                return value  # count(*) over the range: its answer is the rows visited
        return self.result

    def _fed(self, shape: _LoopShape) -> int:
        """Rows put into a sorter or temporary table: its feeding loop's rows if unfiltered."""
        if shape.cursor is not None and shape.cursor.kind == "ephemeral" and self.s.dml:
            return self.changes
        if not shape.feeders and shape.constant_inserts:
            return shape.constant_inserts
        if len(shape.feeders) == 1 and not self.s.loops[shape.feeders[0]].filtered:
            return self._visits(shape.feeders[0])
        return self.returned

    def _loop_reads(self, index: int) -> int:
        shape = self.s.loops[index]
        opener = shape.loop.opener
        if opener is None:
            return 0  # a co-routine or rowid-set loop: its reads are its ops'
        entries = self._entries(index)
        visits = self._visits(index)
        if opener.opcode in SCAN_OPENERS or opener.opcode == "VFilter":
            # Rewind/Last/Sort land on the first entry (one read even when empty); each Next
            # that reaches another entry is one more
            return max(visits, 1) if shape.parent is None else max(visits, entries)
        # a seek: one read per entry that lands (an equality seek that finds nothing: none),
        # each row found, and the Next that steps past the range's end
        cursor = shape.cursor
        found_entries = min(entries, visits)
        if cursor is not None and cursor.seek_eq:
            if cursor.unique_columns and _key_fields(opener) >= cursor.unique_columns:
                # equality on every column of a unique index: one row or none (D1's SQLite
                # plans it as a one-row lookup with no step past it)
                return found_entries
            return visits + (found_entries if shape.bounded else 0)
        return visits + (entries if shape.bounded else entries - found_entries)

    def _runs(self, index: int | None) -> int:
        return 1 if index is None else self._visits(index)

    def run(self) -> RowCounts:
        read = sum(self._loop_reads(i) for i in range(len(self.s.loops)))
        for kind, cursor, op, where in self.s.reads:
            if kind == "count":
                column = self.s.counted_columns.get(op.addr)
                if column is not None:
                    value = self.first_row[column] if self.first_row and column < len(self.first_row) else 0
                    read += value if isinstance(value, int) else 0
                else:
                    read += self.sizes.get(cursor.table or "", 0) if cursor is not None else 0
            elif kind == "seek_eq":
                read += min(self._runs(where), self.result)
            else:
                read += self._runs(where)
        written = 0
        for kind, cursor, where in self.s.writes:
            if kind == "clear":
                written += self.changes
            elif self.s.dml and cursor is not None and not cursor.new and cursor.table not in INTERNAL_TABLES:
                written += self.changes
            else:
                written += self._runs(where)
        return RowCounts(read, written)


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
        self._programs: OrderedDict[tuple[int, int, str], tuple[Program, _Shape]] = OrderedDict()
        self._schema: tuple[tuple[int, int], dict[int, BTree]] | None = None

    def _btrees(
        self, conn: sqlite3.Connection, schema_version: int, internal: Callable[[str], list[tuple]]
    ) -> dict[int, BTree]:
        """The schema's b-trees, read once per connection and schema version."""
        key = (id(conn), schema_version)
        if self._schema is None or self._schema[0] != key:
            self._schema = (key, schema_btrees(internal(SCHEMA_BTREES_SQL)))
        return self._schema[1]

    def prepare(
        self,
        conn: sqlite3.Connection,
        sql: str,
        params: Sequence[Any],
        schema_version: int,
        internal: Callable[[str], list[tuple]],
    ) -> Estimate | None:
        """The statement's program and the sizes it needs, before it runs; ``None`` if it
        cannot be compiled here (the statement itself then reports why)."""
        if sql.lstrip()[:6].upper() == "PRAGMA":
            return None  # some pragmas act while compiling; none reads a table row by row
        # the engine (and so this cache) serves one database; its schema version changes with
        # every schema change, which may move root pages and change plans
        key = (id(conn), schema_version, sql)
        cached = self._programs.get(key)
        if cached is None:
            try:
                rows = conn.execute("EXPLAIN " + sql, tuple(params)).fetchall()
            except (sqlite3.Error, ValueError, OverflowError):
                return None
            program = parse_program(rows, self._btrees(conn, schema_version, internal))
            cached = self._programs[key] = (program, _shape(program))
            if len(self._programs) > self.max_programs:
                self._programs.popitem(last=False)
        else:
            self._programs.move_to_end(key)
        program, shape = cached
        sizes = {}
        try:
            for table in program.scanned_tables:
                quoted = '"' + table.replace('"', '""') + '"'
                sizes[table] = int(internal(f"SELECT count(*) FROM {quoted}")[0][0])
        except sqlite3.Error:
            return None  # the schema changed under us (another connection): no estimate this time
        return Estimate(program, shape, sizes)
