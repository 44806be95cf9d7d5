"""``BoardShell``: the top level of a board build — XDMA, memory controller, clocks, resets and
the multi-engine SoC, wired for one :class:`~.xilinx.UnifiedXilinxPlatform`.

::

    PCIe ─► XDMA ─ m_axil (AXI-Lite BAR, pcie clock) ─► AxiCdc ─────────────────► SoC csr
               └─ m_axi (DMA, pcie clock) ─► [AxiUpsizer] ─► AxiCdc ──────────► SoC host
    board clock ─► clk_wiz ─► engine clock ("sync": SoC, engines)
    DDR3/DDR4:  SoC mem[0] ─► [AxiUpsizer] ─► AxiCdc ─► MIG / DDR4 AXI (ui_clk, "mem")
    HBM:        SoC mem[i] ─► Axi3Splitter ─► HBM AXI port i (engine clock); host ─► port 16

Clock domains: ``pcie`` (XDMA ``axi_aclk``), ``sync`` (engine clock from the clocking
wizard), ``mem`` (the DDR controller's ``ui_clk``; HBM ports run on the engine clock).  One
reset source — XDMA ``axi_aresetn`` low, the engine clock not locked, or the DDR controller in
reset — is synchronised into every domain (``ResetSynchronizer``: asynchronous assert,
synchronous release), so every clock-crossing FIFO is emptied on both sides together.

The IP cores are ``Instance``s of the :class:`~.ip.VivadoIp` descriptions in
:attr:`BoardShell.ips`, whose Tcl the build adds to the Vivado project; ``stand_ins.py`` turns
the same descriptions into simulation models for linting and simulating the whole top.
The SoC's STATUS register shows memory calibration, clock lock and link-up; the LEDs show a
heartbeat, link-up and memory-ready; the XDMA's user interrupt is the OR of the engines'.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce

from amaranth.build import ResourceError
from amaranth.hdl import (
    Cat,
    ClockDomain,
    ClockSignal,
    Const,
    DomainRenamer,
    Elaboratable,
    Instance,
    Module,
    ResetSignal,
    Signal,
)
from amaranth.lib import io, wiring
from amaranth.lib.cdc import FFSynchronizer, ResetSynchronizer
from amaranth.utils import exact_log2

from unified_engine.config import EngineConfig
from unified_engine.rtl.axi import axi4_signature, axi_lite_signature
from unified_engine.rtl.soc import SOC_CSR_ADDR_WIDTH, Soc

from .alveo_u50 import HBM_HOST_PORT
from .ip import (
    XDMA_ID_WIDTH,
    VivadoIp,
    clk_wiz_ip,
    ddr4_ip,
    hbm_ip,
    mig7_ip,
    xdma_ip,
)
from .mig_prj import mig_prj
from .shell_axi import Axi3Splitter, AxiCdc, AxiUpsizer
from .xilinx import UnifiedXilinxPlatform

__all__ = ["BoardShell", "shell_ips"]


def _check_fit(platform: type[UnifiedXilinxPlatform], config: EngineConfig) -> None:
    dw = config.axi_data_width
    if platform.pcie.data_width > dw:
        raise ValueError(f"{platform.board}: the XDMA's {platform.pcie.data_width}-bit bus is "
                         f"wider than the engines' axi_data_width={dw}; the shell only upsizes")
    if platform.memory.kind != "hbm" and platform.memory.controller_width < dw:
        raise ValueError(f"{platform.board}: the memory controller's "
                         f"{platform.memory.controller_width}-bit port is narrower than "
                         f"axi_data_width={dw}")
    if platform.memory.kind == "hbm":
        if dw != 256:
            raise ValueError(f"{platform.board}: HBM ports are 256-bit; axi_data_width={dw}")
        if config.engines > HBM_HOST_PORT:
            raise ValueError(f"{platform.board}: at most {HBM_HOST_PORT} engines (one HBM "
                             f"port each, port {HBM_HOST_PORT} is the host's); "
                             f"engines={config.engines}")
    if (1 << config.axi_addr_width) < platform.memory.size:
        raise ValueError(f"{platform.board}: axi_addr_width={config.axi_addr_width} cannot "
                         f"address {platform.memory.size >> 20} MiB of device memory")


def shell_ips(platform: type[UnifiedXilinxPlatform] | UnifiedXilinxPlatform,
              config: EngineConfig) -> dict[str, VivadoIp]:
    """The IP cores of ``platform``'s shell for ``config``, by role (``xdma``,
    ``clk_engine``, ``mig`` / ``ddr4`` / ``hbm``)."""
    p = platform
    _check_fit(type(p) if isinstance(p, UnifiedXilinxPlatform) else p, config)
    family = "series7" if p.device.startswith("xc7") else "ultrascaleplus"
    ips = {
        "xdma": xdma_ip("xdma_0", family=family, lanes=p.pcie.lanes, speed=p.pcie.speed,
                        data_width=p.pcie.data_width, axi_mhz=p.pcie.axi_mhz,
                        bar_mb=p.pcie.bar_mb, block=p.pcie.block, quad=p.pcie.quad),
        "clk_engine": clk_wiz_ip("clk_engine", in_mhz=p.engine_refclk[1],
                                 out_mhz=config.clock_mhz),
    }
    kind = p.memory.kind
    if kind == "ddr3":
        ddr = p.ddr3
        target = f"{p.device}-{p.package}/-{p.speed}"
        ips["mig"] = mig7_ip("mig_0", prj_text=mig_prj("mig_0", target, ddr, p.mig_pins()),
                             dq=ddr.data_width, dqs=ddr.data_width // 8, addr=ddr.row_bits,
                             ba=ddr.bank_bits, axi_data_width=ddr.axi_data_width,
                             axi_addr_width=ddr.axi_addr_width, ecc=ddr.ecc)
        if ddr.input_mhz != p.engine_refclk[1]:
            ips["clk_mem"] = clk_wiz_ip("clk_mem", in_mhz=p.engine_refclk[1],
                                        out_mhz=ddr.input_mhz)
    elif kind == "ddr4":
        ips["ddr4"] = ddr4_ip("ddr4_0", part=p.ddr4_part, period_ps=p.ddr4_period_ps,
                              ref_period_ps=9996, dq=64, addr=17, ba=2, bg=1,
                              axi_data_width=p.memory.controller_width,
                              axi_addr_width=(p.memory.size - 1).bit_length())
    elif kind == "hbm":
        ports = (*range(config.engines), HBM_HOST_PORT)
        ips["hbm"] = hbm_ip("hbm_0", ports=ports, axi_mhz=config.clock_mhz,
                            tck_mhz=p.hbm_tck_mhz)
    else:
        raise ValueError(f"{p.board}: unknown memory kind {kind!r}")
    return ips


def _axi_connections(bus, ip: VivadoIp, prefix: str, *, upper: bool = False) -> dict:
    """Connections of our AXI4 manager-side interface ``bus`` to an IP's subordinate port
    ``prefix*`` (INCR bursts of full-width beats; lock/cache/prot/qos at their defaults)."""

    def name(sig: str) -> str:
        return prefix + (sig.upper() if upper else sig)

    def fit(value, sig: str):
        width = ip.port(name(sig)).width
        return value[:width] if len(value) >= width else Cat(value, Const(0, width - len(value)))

    size = exact_log2(len(bus.w.payload.data) // 8)
    out = {}
    for ch in ("aw", "ar"):
        stream = getattr(bus, ch)
        out.update({
            name(f"{ch}valid"): stream.valid, name(f"{ch}ready"): stream.ready,
            name(f"{ch}addr"): fit(stream.payload.addr, f"{ch}addr"),
            name(f"{ch}len"): fit(stream.payload.len, f"{ch}len"),
            name(f"{ch}id"): fit(stream.payload.id, f"{ch}id"),
            name(f"{ch}size"): size, name(f"{ch}burst"): 1,
        })
        for extra, value in (("cache", 0b0011),):
            if any(p.name == name(f"{ch}{extra}") for p in ip.ports):
                out[name(f"{ch}{extra}")] = value
    # IDs coming back are ignored: every adapter in front of a controller uses ID 0 only.
    r_id, b_id = Signal(ip.port(name("rid")).width), Signal(ip.port(name("bid")).width)
    out.update({
        name("wvalid"): bus.w.valid, name("wready"): bus.w.ready,
        name("wdata"): bus.w.payload.data, name("wstrb"): bus.w.payload.strb,
        name("wlast"): bus.w.payload.last,
        name("bvalid"): bus.b.valid, name("bready"): bus.b.ready,
        name("bresp"): bus.b.payload.resp, name("bid"): b_id,
        name("rvalid"): bus.r.valid, name("rready"): bus.r.ready,
        name("rdata"): bus.r.payload.data, name("rresp"): bus.r.payload.resp,
        name("rlast"): bus.r.payload.last, name("rid"): r_id,
    })
    return out


class BoardShell(Elaboratable):
    """The board top (see the module docstring).

    Parameters
    ----------
    config:
        The engine configuration (``config.engines`` engines).
    platform:
        The board platform class (the instance passed to ``elaborate`` must be of it).
    engine_factory:
        ``(config, index) → engine`` for the SoC (default: the real engine; ``IdleEngine``
        for a shell-only bring-up image).
    """

    def __init__(self, config: EngineConfig, platform: type[UnifiedXilinxPlatform], *,
                 engine_factory: Callable | None = None) -> None:
        self.config = config
        self.platform_class = platform
        self.engine_factory = engine_factory
        #: The IP cores of this shell, by role (their Tcl goes into the Vivado project).
        self.ips = shell_ips(platform, config)

    def elaborate(self, platform: UnifiedXilinxPlatform) -> Module:
        if not isinstance(platform, self.platform_class):
            raise TypeError(f"BoardShell for {self.platform_class.board} elaborated with "
                            f"{type(platform).__name__}")
        cfg, ips = self.config, self.ips
        m = Module()
        for name in ("pcie", "sync", "mem"):
            m.domains += ClockDomain(name)
        reset_sources = []

        # ----- engine clock
        ref_name, _ = platform.engine_refclk
        ref_buf = io.Buffer("i", platform.request(ref_name, 0, dir="-"))
        m.submodules.refclk_buf = ref_buf
        refclk = Signal(name="board_refclk")
        m.submodules.refclk_bufg = Instance("BUFG", i_I=ref_buf.i, o_O=refclk)
        eng_clk, eng_locked = Signal(name="engine_clk"), Signal(name="engine_locked")
        m.submodules.clk_engine = ips["clk_engine"].instance(
            clk_in1=refclk, reset=0, clk_out1=eng_clk, locked=eng_locked)
        m.d.comb += ClockSignal("sync").eq(eng_clk)
        reset_sources.append(~eng_locked)

        # ----- PCIe
        pcie = platform.request("pcie", 0, dir="-")
        m.submodules.perst_buf = perst = io.Buffer("i", pcie.perst)
        pcie_clk, pcie_rstn, link_up = Signal(), Signal(), Signal()
        irq_req = Signal()
        xdma = ips["xdma"]
        refclk_gt, refclk_div2, sys_clk = Signal(), Signal(), Signal()
        if platform.device.startswith("xc7"):
            m.submodules.pcie_refclk = Instance(
                "IBUFDS_GTE2", i_I=pcie.clk.p, i_IB=pcie.clk.n, i_CEB=0, o_O=sys_clk,
                o_ODIV2=refclk_div2)
            clocks = {"sys_clk": sys_clk}
        else:
            m.submodules.pcie_refclk = Instance(
                "IBUFDS_GTE4", p_REFCLK_HROW_CK_SEL=0, i_I=pcie.clk.p, i_IB=pcie.clk.n,
                i_CEB=0, o_O=refclk_gt, o_ODIV2=refclk_div2)
            m.submodules.pcie_refclk_bufg = Instance(
                "BUFG_GT", i_I=refclk_div2, i_CE=1, i_CEMASK=0, i_CLR=0, i_CLRMASK=0,
                i_DIV=0, o_O=sys_clk)
            clocks = {"sys_clk": sys_clk, "sys_clk_gt": refclk_gt}
        host_axi = axi4_signature(addr_width=cfg.axi_addr_width,
                                  data_width=platform.pcie.data_width,
                                  id_width=XDMA_ID_WIDTH).create(path=("xdma_axi",))
        host_lite = axi_lite_signature(addr_width=SOC_CSR_ADDR_WIDTH).create(
            path=("xdma_lite",))
        conn = {
            **clocks, "sys_rst_n": perst.i, "user_lnk_up": link_up,
            "pci_exp_txp": pcie.tx.p, "pci_exp_txn": pcie.tx.n,
            "pci_exp_rxp": pcie.rx.p, "pci_exp_rxn": pcie.rx.n,
            "axi_aclk": pcie_clk, "axi_aresetn": pcie_rstn, "usr_irq_req": irq_req,
        }
        conn.update(self._xdma_axi(host_axi, xdma))
        conn.update(self._xdma_lite(host_lite))
        m.submodules.xdma = xdma.instance(**conn)
        self._truncate_host(m)
        m.d.comb += ClockSignal("pcie").eq(pcie_clk)
        reset_sources.append(~pcie_rstn)

        # ----- the SoC and the host paths into it
        soc_host_id = XDMA_ID_WIDTH
        if platform.pcie.data_width < cfg.axi_data_width:
            soc_host_id = 1
        m.submodules.soc = soc = Soc(
            cfg, dram_size=platform.memory.size, memory=platform.memory.mode,
            host_id_width=soc_host_id, engine_factory=self.engine_factory,
            board_code=platform.board_code)
        m.submodules.csr_cdc = csr_cdc = AxiCdc(
            axi_lite_signature(addr_width=SOC_CSR_ADDR_WIDTH), s_domain="pcie",
            m_domain="sync", depth=4)
        wiring.connect(m, host_lite, csr_cdc.s)
        wiring.connect(m, csr_cdc.m, soc.csr)
        host_sig = axi4_signature(addr_width=cfg.axi_addr_width, data_width=cfg.axi_data_width,
                                  id_width=soc_host_id)
        m.submodules.host_cdc = host_cdc = AxiCdc(host_sig, s_domain="pcie", m_domain="sync")
        if soc_host_id != XDMA_ID_WIDTH:
            up = AxiUpsizer(addr_width=cfg.axi_addr_width, narrow_width=platform.pcie.data_width,
                            wide_width=cfg.axi_data_width, id_width=XDMA_ID_WIDTH)
            m.submodules.host_upsizer = DomainRenamer({"sync": "pcie"})(up)
            wiring.connect(m, host_axi, up.s)
            wiring.connect(m, up.m, host_cdc.s)
        else:
            wiring.connect(m, host_axi, host_cdc.s)
        wiring.connect(m, host_cdc.m, soc.host)

        # ----- memory
        mem_ready = Signal(name="mem_ready")
        kind = platform.memory.kind
        if kind in ("ddr3", "ddr4"):
            reset_sources.append(self._ddr(m, platform, soc, mem_ready, refclk))
        else:
            self._hbm(m, platform, soc, mem_ready)
            m.d.comb += ClockSignal("mem").eq(eng_clk)

        # ----- resets: one source, released synchronously in every domain
        arst = Signal(name="shell_reset")
        m.d.comb += arst.eq(reduce(lambda a, b: a | b, reset_sources))
        for name in ("pcie", "sync", "mem"):
            m.submodules[f"rst_{name}"] = ResetSynchronizer(arst, domain=name)

        # ----- status, interrupt, LEDs
        status = Signal(3, name="shell_status")
        m.submodules.sync_status = FFSynchronizer(Cat(mem_ready, eng_locked, link_up), status)
        m.d.comb += soc.status.eq(status)
        m.submodules.sync_irq = FFSynchronizer(soc.irq.any(), irq_req, o_domain="pcie")
        beat = Signal(26, name="heartbeat")
        m.d.sync += beat.eq(beat + 1)
        for i, value in enumerate((beat[-1], status[2], status[0])):
            try:
                led = platform.request("led", i, dir="-")
            except ResourceError:
                break
            m.submodules[f"led{i}"] = buf = io.Buffer("o", led)
            m.d.comb += buf.o.eq(value)
        return m

    # ----- pieces

    def _xdma_axi(self, bus, xdma: VivadoIp) -> dict:
        """XDMA ``m_axi_*`` onto our interface (INCR full-width bursts, PG195)."""
        out = {}
        for ch in ("aw", "ar"):
            stream = getattr(bus, ch)
            out.update({
                f"m_axi_{ch}valid": stream.valid, f"m_axi_{ch}ready": stream.ready,
                f"m_axi_{ch}id": stream.payload.id, f"m_axi_{ch}len": stream.payload.len,
                f"m_axi_{ch}addr": Signal(xdma.port(f"m_axi_{ch}addr").width,
                                          name=f"xdma_{ch}addr"),
            })
        out.update({
            "m_axi_wvalid": bus.w.valid, "m_axi_wready": bus.w.ready,
            "m_axi_wdata": bus.w.payload.data, "m_axi_wstrb": bus.w.payload.strb,
            "m_axi_wlast": bus.w.payload.last,
            "m_axi_bvalid": bus.b.valid, "m_axi_bready": bus.b.ready,
            "m_axi_bid": bus.b.payload.id, "m_axi_bresp": bus.b.payload.resp,
            "m_axi_rvalid": bus.r.valid, "m_axi_rready": bus.r.ready,
            "m_axi_rid": bus.r.payload.id, "m_axi_rdata": bus.r.payload.data,
            "m_axi_rresp": bus.r.payload.resp, "m_axi_rlast": bus.r.payload.last,
        })
        self._host_addr = [(out["m_axi_awaddr"], bus.aw.payload.addr),
                           (out["m_axi_araddr"], bus.ar.payload.addr)]
        return out

    def _xdma_lite(self, bus) -> dict:
        aw, ar = Signal(32, name="xdma_lite_awaddr"), Signal(32, name="xdma_lite_araddr")
        self._lite_addr = [(aw, bus.aw.payload.addr), (ar, bus.ar.payload.addr)]
        return {
            "m_axil_awaddr": aw, "m_axil_awvalid": bus.aw.valid, "m_axil_awready": bus.aw.ready,
            "m_axil_wdata": bus.w.payload.data, "m_axil_wstrb": bus.w.payload.strb,
            "m_axil_wvalid": bus.w.valid, "m_axil_wready": bus.w.ready,
            "m_axil_bvalid": bus.b.valid, "m_axil_bresp": bus.b.payload.resp,
            "m_axil_bready": bus.b.ready,
            "m_axil_araddr": ar, "m_axil_arvalid": bus.ar.valid, "m_axil_arready": bus.ar.ready,
            "m_axil_rdata": bus.r.payload.data, "m_axil_rresp": bus.r.payload.resp,
            "m_axil_rvalid": bus.r.valid, "m_axil_rready": bus.r.ready,
        }

    def _ddr(self, m: Module, platform, soc: Soc, mem_ready: Signal, refclk: Signal):
        """MIG (DDR3) or DDR4 behind upsizer + clock crossing; returns its reset source."""
        cfg, ips = self.config, self.ips
        width = platform.memory.controller_width
        bus = soc.mem[0]
        if width > cfg.axi_data_width:
            up = AxiUpsizer(addr_width=cfg.axi_addr_width, narrow_width=cfg.axi_data_width,
                            wide_width=width, id_width=soc.mem_id_width)
            m.submodules.mem_upsizer = up
            wiring.connect(m, bus, up.s)
            bus, id_width = up.m, 1
        else:
            id_width = soc.mem_id_width
        sig = axi4_signature(addr_width=cfg.axi_addr_width, data_width=width, id_width=id_width)
        m.submodules.mem_cdc = cdc = AxiCdc(sig, s_domain="sync", m_domain="mem")
        wiring.connect(m, bus, cdc.s)
        ui_clk, ui_rst = Signal(name="ui_clk"), Signal(name="ui_rst")
        if platform.memory.kind == "ddr3":
            pads = platform.request("ddr3", 0, dir="-")
            mig = ips["mig"]
            sys_clk = refclk
            if "clk_mem" in ips:
                sys_clk = Signal(name="mig_sys_clk")
                m.submodules.clk_mem = ips["clk_mem"].instance(clk_in1=refclk, reset=0,
                                                               clk_out1=sys_clk)
            conn = {f"ddr3_{name}": getattr(pads, name).io for name in (
                "dq", "dqs_n", "dqs_p", "addr", "ba", "ras_n", "cas_n", "we_n", "reset_n",
                "ck_p", "ck_n", "cke", "cs_n", "odt")}
            conn.update({"sys_clk_i": sys_clk, "clk_ref_i": refclk, "sys_rst": 1,
                         "ui_clk": ui_clk, "ui_clk_sync_rst": ui_rst,
                         "aresetn": ~ResetSignal("mem"),
                         "init_calib_complete": mem_ready})
            conn.update(_axi_connections(cdc.m, mig, "s_axi_"))
            m.submodules.mig = mig.instance(**conn)
        else:
            pads = platform.request("ddr4", 0, dir="-")
            ref = platform.request("ddr4_refclk", 0, dir="-")
            ddr4 = ips["ddr4"]
            conn = {"c0_sys_clk_p": ref.p, "c0_sys_clk_n": ref.n, "sys_rst": 0,
                    "c0_ddr4_ck_t": pads.ck.p, "c0_ddr4_ck_c": pads.ck.n,
                    "c0_ddr4_dqs_t": pads.dqs.p, "c0_ddr4_dqs_c": pads.dqs.n,
                    "c0_ddr4_dm_dbi_n": pads.dm_n.io,
                    "c0_ddr4_ui_clk": ui_clk, "c0_ddr4_ui_clk_sync_rst": ui_rst,
                    "c0_ddr4_aresetn": ~ResetSignal("mem"),
                    "c0_init_calib_complete": mem_ready}
            for name in ("act_n", "adr", "ba", "bg", "cke", "odt", "cs_n", "reset_n", "dq"):
                conn[f"c0_ddr4_{name}"] = getattr(pads, name).io
            conn.update(_axi_connections(cdc.m, ddr4, "c0_ddr4_s_axi_"))
            m.submodules.ddr4 = ddr4.instance(**conn)
        m.d.comb += ClockSignal("mem").eq(ui_clk)
        return ui_rst

    def _hbm(self, m: Module, platform, soc: Soc, mem_ready: Signal) -> None:
        """One HBM port per engine (plus the host's), each behind an AXI3 splitter."""
        cfg, hbm = self.config, self.ips["hbm"]
        ref = io.Buffer("i", platform.request("hbm_refclk", 0, dir="-"))
        m.submodules.hbm_refclk_buf = ref
        hbm_ref = Signal(name="hbm_refclk")
        m.submodules.hbm_refclk_bufg = Instance("BUFG", i_I=ref.i, o_O=hbm_ref)
        done, cattrip = Signal(2), Signal(2)
        conn: dict = {}
        for s in range(2):
            conn.update({f"HBM_REF_CLK_{s}": hbm_ref, f"APB_{s}_PCLK": hbm_ref,
                         f"APB_{s}_PRESET_N": 1, f"apb_complete_{s}": done[s],
                         f"DRAM_{s}_STAT_CATTRIP": cattrip[s]})
        ports = (*range(cfg.engines), HBM_HOST_PORT)
        for k, port in enumerate(ports):
            split = Axi3Splitter(addr_width=cfg.axi_addr_width, data_width=256,
                                 id_width=soc.mem_id_width)
            m.submodules[f"hbm_split{port}"] = split
            wiring.connect(m, soc.mem[k], split.s)
            conn.update({f"AXI_{port:02d}_ACLK": ClockSignal("sync"),
                         f"AXI_{port:02d}_ARESET_N": ~ResetSignal("sync")})
            conn.update(_axi_connections(split.m, hbm, f"AXI_{port:02d}_", upper=True))
        m.submodules.hbm = hbm.instance(**conn)
        m.d.comb += mem_ready.eq(done.all())
        trip = platform.request("hbm_cattrip", 0, dir="-")
        m.submodules.cattrip_buf = buf = io.Buffer("o", trip)
        m.d.comb += buf.o.eq(cattrip.any())

    def _truncate_host(self, m: Module) -> None:
        """The XDMA's 64-bit addresses onto the SoC's address widths (BAR offsets: 20 bits)."""
        for wide, narrow in self._host_addr + self._lite_addr:
            m.d.comb += narrow.eq(wide[:len(narrow)])
