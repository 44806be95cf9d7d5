# amaranth: UnusedElaboratable=no
"""The MATMUL unit's plumbing blocks against Python models, with odd sizes and back-pressure:
``Unpacker`` (rows → chunks), ``WindowReader`` (unaligned entry windows through an SramPort)
and ``SegmentWriter`` (byte segments → row writes with byte enables)."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Value
from memmodels import SramModel
from simhelpers import run

from unified_engine.rtl.engine_if import MemoryGeometry
from unified_engine.rtl.matmul_output import SegmentWriter
from unified_engine.rtl.matmul_stream import Unpacker, WindowReader


def _bits_of(rows: list[int], row_bits: int) -> int:
    return sum(r << (k * row_bits) for k, r in enumerate(rows))


@pytest.mark.parametrize("row_bits, sizes", [
    (64, (64,)),  # chunk = row
    (64, (128,)),  # two rows per chunk
    (24, (40, 20)),  # neither divides the other
    (64, (48, 24, 12)),  # the B-panel case with C = 3
], ids=lambda v: str(v))
def test_unpacker_segments(row_bits, sizes):
    """Random segments (count chunks each, rows = ceil(count·chunk / row)), random gaps on
    both sides: every chunk is the next ``chunk`` bits of its segment's row stream."""
    rng = np.random.default_rng(row_bits + sum(sizes))
    dut = Unpacker(row_bits, sizes, 8)
    segments = []
    for _ in range(12):
        sel = int(rng.integers(0, len(sizes)))
        count = int(rng.integers(1, 7))
        nrows = -(-count * sizes[sel] // row_bits)
        rows = [int(x) for x in rng.integers(0, 2**row_bits, nrows, dtype=np.uint64)]
        segments.append((sel, count, rows))

    async def bench(ctx):
        # one segment at a time (sel/count are static per segment), rows and chunks random
        for sel, count, rows in segments:
            ctx.set(dut.sel, sel)
            ctx.set(dut.count, count)
            size = sizes[sel]
            stream = _bits_of(rows, row_bits)
            want = [(stream >> (k * size)) & ((1 << size) - 1) for k in range(count)]
            got = []
            pending = list(rows)
            while len(got) < count:
                offer = bool(pending) and rng.random() < 0.7
                ctx.set(dut.i.valid, offer)
                if offer:
                    ctx.set(dut.i.payload.data, pending[0])
                    ctx.set(dut.i.payload.last, len(pending) == 1)
                take = rng.random() < 0.6
                ctx.set(dut.o.ready, take)
                _, _, i_ok, o_ok, data, first, last = await ctx.tick().sample(
                    dut.i.ready, dut.o.valid, dut.o.payload.data, dut.o.payload.first,
                    dut.o.payload.last)
                if offer and i_ok:
                    pending.pop(0)
                if take and o_ok:
                    got.append(data & ((1 << size) - 1))
                    assert first == (len(got) == 1) and last == (len(got) == count)
            assert not pending, "rows left over after the segment's last chunk"
            assert got == want
            ctx.set(dut.i.valid, 0)
            ctx.set(dut.o.ready, 0)

    run(dut, bench)


@pytest.mark.parametrize("beat, width", [(8, 2), (8, 5), (32, 8)])
def test_window_reader(beat, width):
    """Random windows (length 1 … W, any start, repeats and same-row neighbours to hit the
    cache) with a stalling, slow memory: each window equals the memory's entries."""
    rng = np.random.default_rng(beat * 10 + width)
    geo = MemoryGeometry("mem", 1024, beat)
    dut = WindowReader(geo, width, geo.addr_bits + (beat // 2 - 1).bit_length())
    mem = rng.integers(0, 256, 1024, dtype=np.uint16).astype(np.uint8)
    model = SramModel(dut.port, mem, beat, stall=0.3, latency=2, jitter=2, seed=1)
    entries = mem.view(np.uint16)
    reqs = []
    for _ in range(60):
        count = int(rng.integers(1, width + 1))
        if reqs and rng.random() < 0.3:
            start = reqs[-1][0] + int(rng.integers(0, 2))  # same rows again (or a neighbour)
            count = reqs[-1][1]
        else:
            start = int(rng.integers(0, len(entries) - count))
        reqs.append((min(start, len(entries) - count), count))

    async def bench(ctx):
        got = []
        pending = list(reqs)
        out = Value.cast(dut.o.payload)
        while len(got) < len(reqs):
            ctx.set(dut.req.valid, bool(pending))
            if pending:
                ctx.set(dut.req.payload.entry, pending[0][0])
                ctx.set(dut.req.payload.count, pending[0][1])
            take = rng.random() < 0.7
            ctx.set(dut.o.ready, take)
            _, _, r_ok, o_ok, word = await ctx.tick().sample(dut.req.ready, dut.o.valid, out)
            if pending and r_ok:
                pending.pop(0)
            if take and o_ok:
                got.append(word)
        for (start, count), word in zip(reqs, got, strict=True):
            values = [(word >> (16 * n)) & 0xFFFF for n in range(count)]
            assert values == [int(x) for x in entries[start:start + count]], (start, count)
        assert model.reads < 2 * len(reqs)  # the cache saved reads

    run(dut, bench, processes=[model.process])


@pytest.mark.parametrize("beat, max_bytes", [(8, 8), (8, 12), (32, 32), (32, 6)])
def test_segment_writer(beat, max_bytes):
    """Random segments at any byte address: applying the emitted row writes (byte enables)
    to a memory gives exactly the segments' bytes, nothing else."""
    rng = np.random.default_rng(beat + max_bytes)
    rows = 64
    dut = SegmentWriter(beat, 6, max_bytes)
    segs = []
    for _ in range(50):
        n = int(rng.integers(1, max_bytes + 1))
        addr = int(rng.integers(0, rows * beat - n))
        segs.append((addr, n, bytes(rng.integers(0, 256, n, dtype=np.uint16).astype(np.uint8))))
    want = np.zeros(rows * beat, np.uint8)
    for addr, n, payload in segs:
        want[addr:addr + n] = np.frombuffer(payload, np.uint8)

    async def bench(ctx):
        mem = np.zeros(rows * beat, np.uint8)
        pending = list(segs)
        writes = 0
        while pending or not ctx.get(dut.idle):
            ctx.set(dut.i.valid, bool(pending))
            if pending:
                addr, n, payload = pending[0]
                ctx.set(dut.i.payload.addr, addr)
                ctx.set(dut.i.payload.nbytes, n)
                ctx.set(dut.i.payload.data, int.from_bytes(payload, "little"))
            take = rng.random() < 0.7
            ctx.set(dut.o.ready, take)
            _, _, i_ok, o_ok, row, data, be = await ctx.tick().sample(
                dut.i.ready, dut.o.valid, dut.o.payload.addr, dut.o.payload.data,
                dut.o.payload.be)
            if pending and i_ok:
                pending.pop(0)
            if take and o_ok:
                writes += 1
                raw = np.frombuffer(data.to_bytes(beat, "little"), np.uint8)
                mask = np.array([(be >> b) & 1 for b in range(beat)], bool)
                assert mask.any()
                mem[row * beat:(row + 1) * beat][mask] = raw[mask]
        assert (mem == want).all()
        assert writes <= sum(-(-(a % beat + n) // beat) for a, n, _ in segs)

    run(dut, bench)
