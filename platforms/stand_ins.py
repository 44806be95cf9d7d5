"""Simulation stand-ins of the shell's IP cores and Xilinx primitives (Verilog).

A board top instantiates vendor IP (XDMA, clocking wizard, MIG / DDR4 / HBM) and primitives
(IBUFDS, BUFG, IBUFDS_GTE*, …) that exist only inside Vivado.  To lint the generated top with
Verilator, or simulate it, each one is replaced by a small model with *exactly* the same
ports — built from the same :class:`~.ip.VivadoIp` port list the ``Instance`` uses:

* clocking wizard: ``clk_out1`` = ``clk_in1``, always locked;
* XDMA: ``axi_aclk`` = the reference clock, reset = PERST#, the AXI/AXI-Lite managers idle
  (a testbench drives the SoC's host ports through them or replaces the model);
* MIG / DDR4: ``ui_clk`` = the system clock, calibrated at once, and an AXI subordinate that
  accepts every burst and answers OKAY with zero data (one burst per direction at a time);
* HBM: the same subordinate on every enabled AXI port, in that port's clock.

Never give these files to Vivado: they carry the names of the real cores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from amaranth.back import verilog
from amaranth.hdl import (
    ClockDomain,
    ClockSignal,
    Const,
    DomainRenamer,
    Elaboratable,
    IOBufferInstance,
    IOPort,
    Module,
    ResetSignal,
    Signal,
)

from .ip import VivadoIp

__all__ = ["PRIMITIVES_VERILOG", "IpStandIn", "stand_ins_verilog"]

#: Behavioural models of the Xilinx primitives a board top uses (outside the IP cores).
PRIMITIVES_VERILOG = """\
// Stand-ins of Xilinx primitives for linting / simulating a board top (not for Vivado).
module IBUF(input I, output O); assign O = I; endmodule
module IBUFDS(input I, input IB, output O); assign O = I; endmodule
module OBUFT(input I, input T, output O); assign O = I; endmodule
module BUFG(input I, output O); assign O = I; endmodule
module FDPE #(parameter [0:0] INIT = 1'b1)
  (input C, input CE, input PRE, input D, output reg Q);
  initial Q = INIT;
  always @(posedge C or posedge PRE) if (PRE) Q <= 1'b1; else if (CE) Q <= D;
endmodule
module BUFG_GT(input I, input CE, input CEMASK, input CLR, input CLRMASK, input [2:0] DIV,
               output O); assign O = I; endmodule
module IBUFDS_GTE2(input I, input IB, input CEB, output O, output ODIV2);
  assign O = I; assign ODIV2 = I;
endmodule
module IBUFDS_GTE4 #(parameter [1:0] REFCLK_HROW_CK_SEL = 2'b00)
  (input I, input IB, input CEB, output O, output ODIV2);
  assign O = I; assign ODIV2 = I;
endmodule
"""


class _Responder(Elaboratable):
    """An AXI subordinate that accepts every burst: B OKAY after WLAST, ``len + 1`` R beats
    of zeros.  ``sig(name)`` returns the port signal for an AXI signal name (``awvalid``)."""

    def __init__(self, sig: Callable[[str], Signal]) -> None:
        self.sig = sig

    def elaborate(self, platform) -> Module:
        m, s = Module(), self.sig
        w_busy, b_pend = Signal(), Signal()
        bid = Signal(len(s("awid")))
        m.d.comb += [s("awready").eq(~w_busy & ~b_pend), s("wready").eq(w_busy),
                     s("bvalid").eq(b_pend), s("bid").eq(bid), s("bresp").eq(0)]
        with m.If(s("awvalid") & s("awready")):
            m.d.sync += [w_busy.eq(1), bid.eq(s("awid"))]
        with m.If(s("wvalid") & s("wready") & s("wlast")):
            m.d.sync += [w_busy.eq(0), b_pend.eq(1)]
        with m.If(s("bvalid") & s("bready")):
            m.d.sync += b_pend.eq(0)
        r_busy = Signal()
        left = Signal(len(s("arlen")))
        rid = Signal(len(s("arid")))
        m.d.comb += [s("arready").eq(~r_busy), s("rvalid").eq(r_busy), s("rid").eq(rid),
                     s("rlast").eq(left == 0), s("rdata").eq(0), s("rresp").eq(0)]
        with m.If(s("arvalid") & s("arready")):
            m.d.sync += [r_busy.eq(1), left.eq(s("arlen")), rid.eq(s("arid"))]
        with m.If(s("rvalid") & s("rready")):
            with m.If(left == 0):
                m.d.sync += r_busy.eq(0)
            with m.Else():
                m.d.sync += left.eq(left - 1)
        return m


class IpStandIn(Elaboratable):
    """The stand-in of one :class:`~.ip.VivadoIp` (see the module docstring).

    ``ports`` lists its port objects (``Signal`` or ``IOPort``) for ``verilog.convert``.
    """

    def __init__(self, ip: VivadoIp) -> None:
        self.ip = ip
        self.signals: dict[str, Signal | IOPort] = {}
        for p in ip.ports:
            self.signals[p.name] = (IOPort(p.width, name=p.name) if p.direction == "io"
                                    else Signal(p.width, name=p.name))
        self.ports = list(self.signals.values())

    def _axi(self, m: Module, prefix: str, clock: Signal, reset, domain: str,
             upper: bool = False) -> set[str]:
        """An AXI responder on ``prefix*`` in a new clock domain; returns the names driven."""
        m.domains += ClockDomain(domain)
        m.d.comb += [ClockSignal(domain).eq(clock), ResetSignal(domain).eq(reset)]

        def sig(name: str) -> Signal:
            return self.signals[prefix + (name.upper() if upper else name)]

        m.submodules[f"{domain}_resp"] = DomainRenamer(domain)(_Responder(sig))
        return {prefix + (n.upper() if upper else n) for n in (
            "awready", "wready", "bvalid", "bid", "bresp", "arready", "rvalid", "rid", "rlast",
            "rdata", "rresp")}

    def elaborate(self, platform) -> Module:
        m, s, kind = Module(), self.signals, self.ip.kind
        driven: dict[str, object] = {}
        axi_driven: set[str] = set()
        if kind == "clk_wiz":
            driven = {"clk_out1": s["clk_in1"], "locked": 1}
        elif kind == "xdma":
            driven = {"axi_aclk": s["sys_clk"], "axi_aresetn": s["sys_rst_n"],
                      "user_lnk_up": s["sys_rst_n"], "usr_irq_ack": s["usr_irq_req"],
                      "m_axi_bready": 1, "m_axi_rready": 1, "m_axil_bready": 1,
                      "m_axil_rready": 1}
        elif kind == "mig7":
            driven = {"ui_clk": s["sys_clk_i"], "ui_clk_sync_rst": ~s["sys_rst"],
                      "mmcm_locked": 1, "init_calib_complete": 1}
            axi_driven = self._axi(m, "s_axi_", s["sys_clk_i"], ~s["aresetn"], "ui")
        elif kind == "ddr4":
            driven = {"c0_ddr4_ui_clk": s["c0_sys_clk_p"],
                      "c0_ddr4_ui_clk_sync_rst": s["sys_rst"], "c0_init_calib_complete": 1}
            axi_driven = self._axi(m, "c0_ddr4_s_axi_", s["c0_sys_clk_p"],
                                   ~s["c0_ddr4_aresetn"], "ui")
        elif kind == "hbm":
            driven = {name: 1 for name in s if name.startswith("apb_complete_")}
            for name in s:
                if name.endswith("_ACLK") and name.startswith("AXI_"):
                    port = name[:-len("ACLK")]
                    axi_driven |= self._axi(m, port, s[name], ~s[port + "ARESET_N"],
                                            f"axi{port[4:6]}", upper=True)
        else:
            raise ValueError(f"no stand-in for IP kind {kind!r}")
        for p in self.ip.ports:
            if p.direction == "o" and p.name not in axi_driven:
                value = driven.get(p.name, 0)
                m.d.comb += s[p.name].eq(Const(value, p.width) if isinstance(value, int)
                                         else value)
            elif p.direction == "io":
                m.submodules[f"io_{p.name}"] = IOBufferInstance(
                    s[p.name], i=Signal(p.width), o=Const(0, p.width), oe=Const(0, 1))
        return m


def stand_ins_verilog(ips: Iterable[VivadoIp]) -> str:
    """Verilog of the primitive stand-ins and of one stand-in per IP core."""
    parts = [PRIMITIVES_VERILOG]
    for ip in ips:
        stand_in = IpStandIn(ip)
        parts.append(f"// Stand-in of {ip.module} ({ip.ip}); not for Vivado.\n" +
                     verilog.convert(stand_in, name=ip.module, ports=stand_in.ports,
                                     emit_src=False))
    return "\n".join(parts)
