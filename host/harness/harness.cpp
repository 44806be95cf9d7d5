// C++ harness around a Verilated engine top: DRAM behind an AXI4 subordinate model, an
// AXI4-Lite manager for the CSRs, and a small extern "C" API that Python calls through ctypes
// once per *transaction* (a CSR access, a DRAM copy, a run of many cycles), never per cycle.
//
// The design must have the ports of EngineTop: an AXI4 manager `axi`, an AXI4-Lite
// subordinate `csr`, `irq`, `busy`, `clk`, `rst`.  Every port name and every payload field
// position comes from the generated header ue_ports.h (built from the Amaranth layouts by
// unified_engine.host.verilator_build), so this file never spells an offset or width.
//
// One clock cycle (Harness::tick):
//   1. drive the subordinate outputs (READY/VALID/payload) from the model state alone;
//   2. clk = 0, eval: the design's combinational outputs settle (its READY may follow VALID);
//   3. sample every handshake (VALID && READY) and check payload stability;
//   4. clk = 1, eval: the design's registers update;
//   5. update the model state with the handshakes of step 3.
//
// DRAM model (per AXI port):
//   * AR/AW accepted while fewer than `max_outstanding` bursts of that kind are in flight;
//   * the first R beat of a burst is valid `latency` cycles after its AR handshake (bursts
//     overlap their latencies), beats are returned in order (the design may rely on it);
//   * a B response is valid `latency` cycles after the burst's last W beat;
//   * R and W beats are each limited to `bytes_per_cycle` by a token bucket (fixed point,
//     2^-20 bytes) that holds less than one beat plus one cycle's worth, so idle cycles do
//     not bank a burst and fractional rates are exact on average;
//   * W beats may come before, with or after their AW: up to kWriteBuffer beats are
//     buffered until their burst's AW arrives (so AW and its first W can share a cycle);
//   * checked: beat-aligned address, no burst crossing 4 KB, burst inside DRAM, WLAST on
//     exactly the last beat, AR/AW/W payload stable and VALID held until READY, no B/R on the
//     CSR port without a transaction, and (once ue_set_window was called) no byte written
//     outside the DRAM window [lo, hi) the host programmed.  A violation is recorded as an error message (the burst
//     is still served: aligned down, or SLVERR with zero data outside DRAM) and makes run()
//     return; Python raises it.

#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include "ue_ports.h"
#include "verilated.h"
#include UE_TOP_HEADER
#if VM_TRACE_VCD
#include "verilated_vcd_c.h"
#define UE_TRACE VerilatedVcdC
#elif VM_TRACE_FST
#include "verilated_fst_c.h"
#define UE_TRACE VerilatedFstC
#endif
#include "ue_bits.h"

#define UE_API extern "C" __attribute__((visibility("default")))
// Type of a top-level port (Verilator exposes ports as reference members).
#define UE_PORT_T(name) std::remove_reference_t<decltype(std::declval<UE_TOP_CLASS&>().name)>

namespace {

constexpr uint64_t kBeat = UE_AXI_BYTES;
constexpr uint64_t kBoundary = 4096;  // AXI: a burst must not cross a 4 KB boundary
constexpr int kFracBits = 20;         // bandwidth credit is fixed point, 2^-20 bytes
constexpr uint64_t kBeatCredit = kBeat << kFracBits;
constexpr uint64_t kCreditCap = kBeatCredit - 1;  // plus one cycle's worth, see tick()
constexpr size_t kWriteBuffer = 256;  // W beats accepted ahead of their AW
constexpr size_t kMaxErrorChars = 4000;
constexpr uint32_t kOkay = 0, kSlverr = 2;

struct ReadBurst {
    uint64_t addr;  // aligned byte address of the next beat
    uint32_t beats, done, id;
    uint64_t due;  // first cycle its first beat may be valid
    bool bad;      // outside DRAM: SLVERR with zero data
};

struct WriteBurst {
    uint64_t addr;
    uint32_t beats, done, id;
    bool bad;
};

struct WriteBeat {
    uint8_t data[kBeat];
    uint8_t strb[kBeat];  // one flag per byte
    bool last;
};

struct WriteResp {
    uint32_t id, resp;
    uint64_t due;
};

// What the AXI4-Lite manager is doing (one transaction at a time).
struct Lite {
    bool aw = false, w = false, b = false;  // AW / W still to hand over, B awaited
    bool ar = false, r = false;             // AR still to hand over, R awaited
    uint32_t addr = 0, data = 0, resp = 0;
};

// A stream handshake on one AXI channel, with the payload held while VALID && !READY.
template <class P>
struct Hold {
    bool held = false;
    P payload{};
};

struct Harness {
    std::unique_ptr<VerilatedContext> ctx;
    std::unique_ptr<UE_TOP_CLASS> top;
#ifdef UE_TRACE
    std::unique_ptr<UE_TRACE> trace;
#endif
    uint8_t* dram = nullptr;
    uint64_t dram_size = 0;
    uint64_t cycle = 0;
    uint32_t latency = 1, max_outstanding = 1, csr_timeout = 100000;
    uint64_t bpc = kBeatCredit;  // bytes per cycle, fixed point
    uint64_t window_lo = 0, window_hi = ~uint64_t(0);  // bytes the design may write
    uint64_t rcredit = kBeatCredit, wcredit = kBeatCredit;
    std::deque<ReadBurst> reads;
    std::deque<WriteBurst> writes;
    std::deque<WriteBeat> wdata;  // W beats whose AW has not arrived yet
    std::deque<WriteResp> bresp;
    Lite lite;
    Hold<UE_PORT_T(UE_P_AXI_AR_PAYLOAD)> ar_hold;
    Hold<UE_PORT_T(UE_P_AXI_AW_PAYLOAD)> aw_hold;
    Hold<UE_PORT_T(UE_P_AXI_W_PAYLOAD)> w_hold;
    // statistics: bursts, beats, most bursts in flight
    uint64_t stats[6] = {0, 0, 0, 0, 0, 0};
    std::string error;
    unsigned error_count = 0;

    void fail(const char* fmt, ...) __attribute__((format(printf, 2, 3)));
    void drive();
    void tick();
    void accept_read(uint64_t addr, uint32_t beats, uint32_t id);
    void accept_write(uint64_t addr, uint32_t beats, uint32_t id);
    void take_beat(const UE_PORT_T(UE_P_AXI_W_PAYLOAD) & payload);
    void drain_writes();
    bool check_burst(uint64_t& addr, uint32_t beats, const char* kind);
    template <class P>
    void check_stable(Hold<P>& hold, bool valid, bool ready, const P& payload, const char* ch);
};

void Harness::fail(const char* fmt, ...) {
    ++error_count;
    if (error.size() > kMaxErrorChars) return;  // keep the first messages, count the rest
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    error += "cycle " + std::to_string(cycle) + ": " + buf + "\n";
}

// Checks one AR/AW burst; aligns `addr` down so that a misaligned burst is still served.
bool Harness::check_burst(uint64_t& addr, uint32_t beats, const char* kind) {
    bool ok = true;
    if (addr % kBeat) {
        fail("%s burst at %#llx is not aligned to the %llu-byte beat", kind,
             (unsigned long long)addr, (unsigned long long)kBeat);
        addr -= addr % kBeat;
    }
    const uint64_t end = addr + uint64_t(beats) * kBeat;
    if (addr / kBoundary != (end - 1) / kBoundary)
        fail("%s burst %#llx + %u beats crosses a 4 KB boundary", kind,
             (unsigned long long)addr, beats);
    if (end > dram_size) {
        fail("%s burst %#llx..%#llx is past the end of DRAM (%#llx bytes)", kind,
             (unsigned long long)addr, (unsigned long long)end, (unsigned long long)dram_size);
        ok = false;
    }
    return ok;
}

void Harness::accept_read(uint64_t addr, uint32_t beats, uint32_t id) {
    const bool ok = check_burst(addr, beats, "read");
    reads.push_back({addr, beats, 0, id, cycle + latency, !ok});
    ++stats[0];
    if (reads.size() > stats[4]) stats[4] = reads.size();
}

void Harness::accept_write(uint64_t addr, uint32_t beats, uint32_t id) {
    const bool ok = check_burst(addr, beats, "write");
    writes.push_back({addr, beats, 0, id, !ok});
    ++stats[1];
    if (writes.size() > stats[5]) stats[5] = writes.size();
}

void Harness::take_beat(const UE_PORT_T(UE_P_AXI_W_PAYLOAD) & payload) {
    WriteBeat beat;
    ue_get_bytes(payload, UE_F_AXI_W_DATA, beat.data);
    ue_get_flags(payload, UE_F_AXI_W_STRB, beat.strb);
    beat.last = ue_get(payload, UE_F_AXI_W_LAST) != 0;
    wdata.push_back(beat);
    ++stats[3];
}

// Applies buffered W beats to the bursts whose AW has arrived, in order.
void Harness::drain_writes() {
    while (!writes.empty() && !wdata.empty()) {
        WriteBurst& wb = writes.front();
        const WriteBeat& beat = wdata.front();
        const bool expect_last = wb.done + 1 == wb.beats;
        if (beat.last != expect_last)
            fail("WLAST is %d on beat %u of a %u-beat write burst at %#llx", int(beat.last),
                 wb.done + 1, wb.beats, (unsigned long long)(wb.addr - uint64_t(wb.done) * kBeat));
        bool outside = false;
        for (uint64_t i = 0; i < kBeat; ++i) {
            if (!beat.strb[i]) continue;
            const uint64_t a = wb.addr + i;
            outside |= a < window_lo || a >= window_hi;
            if (!wb.bad) dram[a] = beat.data[i];
        }
        if (outside)
            fail("write beat at %#llx has enabled bytes outside the DRAM window [%#llx, %#llx)",
                 (unsigned long long)wb.addr, (unsigned long long)window_lo,
                 (unsigned long long)window_hi);
        wdata.pop_front();
        wb.addr += kBeat;
        if (++wb.done == wb.beats) {
            bresp.push_back({wb.id, wb.bad ? kSlverr : kOkay, cycle + latency});
            writes.pop_front();
        }
    }
}

template <class P>
void Harness::check_stable(Hold<P>& hold, bool valid, bool ready, const P& payload,
                           const char* ch) {
    if (hold.held && !valid) fail("%s VALID dropped before READY", ch);
    else if (hold.held && !ue_same(hold.payload, payload))
        fail("%s payload changed while VALID and not READY", ch);
    hold.held = valid && !ready;
    if (hold.held) hold.payload = payload;
}

void Harness::drive() {
    UE_TOP_CLASS& t = *top;
    t.UE_P_AXI_AR_READY = reads.size() < max_outstanding;
    t.UE_P_AXI_AW_READY = writes.size() < max_outstanding;
    t.UE_P_AXI_W_READY = wdata.size() < kWriteBuffer && wcredit >= kBeatCredit;

    const bool r_valid = !reads.empty() && reads.front().due <= cycle && rcredit >= kBeatCredit;
    t.UE_P_AXI_R_VALID = r_valid;
    if (r_valid) {
        const ReadBurst& rb = reads.front();
        uint8_t data[kBeat];
        if (rb.bad) std::memset(data, 0, kBeat);
        else std::memcpy(data, dram + rb.addr, kBeat);
        ue_set_bytes(t.UE_P_AXI_R_PAYLOAD, UE_F_AXI_R_DATA, data);
        ue_set(t.UE_P_AXI_R_PAYLOAD, UE_F_AXI_R_ID, rb.id);
        ue_set(t.UE_P_AXI_R_PAYLOAD, UE_F_AXI_R_RESP, rb.bad ? kSlverr : kOkay);
        ue_set(t.UE_P_AXI_R_PAYLOAD, UE_F_AXI_R_LAST, rb.done + 1 == rb.beats);
    }
    const bool b_valid = !bresp.empty() && bresp.front().due <= cycle;
    t.UE_P_AXI_B_VALID = b_valid;
    if (b_valid) {
        ue_set(t.UE_P_AXI_B_PAYLOAD, UE_F_AXI_B_ID, bresp.front().id);
        ue_set(t.UE_P_AXI_B_PAYLOAD, UE_F_AXI_B_RESP, bresp.front().resp);
    }

    t.UE_P_CSR_AW_VALID = lite.aw;
    ue_set(t.UE_P_CSR_AW_PAYLOAD, UE_F_CSR_AW_ADDR, lite.addr);
    t.UE_P_CSR_W_VALID = lite.w;
    ue_set(t.UE_P_CSR_W_PAYLOAD, UE_F_CSR_W_DATA, lite.data);
    ue_set(t.UE_P_CSR_W_PAYLOAD, UE_F_CSR_W_STRB, ue_mask(UE_CSR_BYTES));
    t.UE_P_CSR_B_READY = 1;
    t.UE_P_CSR_AR_VALID = lite.ar;
    ue_set(t.UE_P_CSR_AR_PAYLOAD, UE_F_CSR_AR_ADDR, lite.addr);
    t.UE_P_CSR_R_READY = 1;
}

void Harness::tick() {
    UE_TOP_CLASS& t = *top;
    drive();
    t.UE_P_CLK = 0;
    t.eval();
#ifdef UE_TRACE
    if (trace) trace->dump(2 * cycle);
#endif
    // Handshakes of this cycle, sampled before the clock edge.
    const bool ar = t.UE_P_AXI_AR_VALID && t.UE_P_AXI_AR_READY;
    const bool aw = t.UE_P_AXI_AW_VALID && t.UE_P_AXI_AW_READY;
    const bool w = t.UE_P_AXI_W_VALID && t.UE_P_AXI_W_READY;
    const bool r = t.UE_P_AXI_R_VALID && t.UE_P_AXI_R_READY;
    const bool b = t.UE_P_AXI_B_VALID && t.UE_P_AXI_B_READY;
    const bool l_aw = t.UE_P_CSR_AW_VALID && t.UE_P_CSR_AW_READY;
    const bool l_w = t.UE_P_CSR_W_VALID && t.UE_P_CSR_W_READY;
    const bool l_b = t.UE_P_CSR_B_VALID;  // B READY is always high
    const bool l_ar = t.UE_P_CSR_AR_VALID && t.UE_P_CSR_AR_READY;
    const bool l_r = t.UE_P_CSR_R_VALID;  // R READY is always high
    check_stable(ar_hold, t.UE_P_AXI_AR_VALID, t.UE_P_AXI_AR_READY, t.UE_P_AXI_AR_PAYLOAD, "AR");
    check_stable(aw_hold, t.UE_P_AXI_AW_VALID, t.UE_P_AXI_AW_READY, t.UE_P_AXI_AW_PAYLOAD, "AW");
    check_stable(w_hold, t.UE_P_AXI_W_VALID, t.UE_P_AXI_W_READY, t.UE_P_AXI_W_PAYLOAD, "W");
    const UE_PORT_T(UE_P_AXI_AR_PAYLOAD) ar_p = t.UE_P_AXI_AR_PAYLOAD;
    const UE_PORT_T(UE_P_AXI_AW_PAYLOAD) aw_p = t.UE_P_AXI_AW_PAYLOAD;
    const UE_PORT_T(UE_P_AXI_W_PAYLOAD) w_p = t.UE_P_AXI_W_PAYLOAD;
    const uint32_t l_b_resp = ue_get(t.UE_P_CSR_B_PAYLOAD, UE_F_CSR_B_RESP);
    const uint32_t l_r_data = ue_get(t.UE_P_CSR_R_PAYLOAD, UE_F_CSR_R_DATA);
    const uint32_t l_r_resp = ue_get(t.UE_P_CSR_R_PAYLOAD, UE_F_CSR_R_RESP);

    t.UE_P_CLK = 1;
    t.eval();
#ifdef UE_TRACE
    if (trace) trace->dump(2 * cycle + 1);
#endif

    if (r) {
        ReadBurst& rb = reads.front();
        rb.addr += kBeat;
        rcredit -= kBeatCredit;
        ++stats[2];
        if (++rb.done == rb.beats) reads.pop_front();
    }
    if (b) bresp.pop_front();
    if (w) {
        wcredit -= kBeatCredit;
        take_beat(w_p);
    }
    if (ar)
        accept_read(ue_get(ar_p, UE_F_AXI_AR_ADDR), ue_get(ar_p, UE_F_AXI_AR_LEN) + 1,
                    ue_get(ar_p, UE_F_AXI_AR_ID));
    if (aw)
        accept_write(ue_get(aw_p, UE_F_AXI_AW_ADDR), ue_get(aw_p, UE_F_AXI_AW_LEN) + 1,
                     ue_get(aw_p, UE_F_AXI_AW_ID));
    drain_writes();

    // A response is legal only after its request handshakes (in an earlier cycle).
    if (l_b) {
        if (!lite.b || lite.aw || lite.w) fail("CSR port: B response without a write");
        lite.b = false;
        lite.resp = l_b_resp;
    }
    if (l_r) {
        if (!lite.r || lite.ar) fail("CSR port: R response without a read");
        lite.r = false;
        lite.resp = l_r_resp;
        lite.data = l_r_data;
    }
    if (l_aw) lite.aw = false;
    if (l_w) lite.w = false;
    if (l_ar) lite.ar = false;

    ++cycle;
    // A beat costs kBeatCredit; the cap keeps the fraction a waiting beat has earned (so
    // 2.5 bytes/cycle really averages 2.5) but banks no more than that while idle.
    rcredit = std::min(rcredit + bpc, kCreditCap + bpc);
    wcredit = std::min(wcredit + bpc, kCreditCap + bpc);
}

// Ticks until the CSR transaction is answered; the response code, or -1 on timeout.
int finish_lite(Harness* h, const char* what, uint32_t offset) {
    for (uint32_t n = 0; n < h->csr_timeout; ++n) {
        h->tick();
        if (!(h->lite.aw || h->lite.w || h->lite.b || h->lite.ar || h->lite.r))
            return int(h->lite.resp);
    }
    h->fail("CSR %s at %#x got no response within %u cycles", what, offset, h->csr_timeout);
    h->lite = Lite{};
    return -1;
}

}  // namespace

// ----- C API ------------------------------------------------------------------------------------

// A new harness: DRAM of `dram_bytes` (zeroed, allocated lazily by the OS), first-beat latency
// in cycles (>= 1), bandwidth in 2^-20 bytes per cycle (per direction), outstanding bursts per
// direction, CSR timeout in cycles, optional trace file (NULL or "" for none).  The design is
// held in reset for two cycles (plus the UE_RESET_LATENCY uncounted cycles of the registered
// reset).  Check ue_error() afterwards.
UE_API void* ue_create(uint64_t dram_bytes, uint32_t latency, uint64_t bpc_fixed,
                       uint32_t max_outstanding, uint32_t csr_timeout, const char* trace_path) {
    Harness* h = new Harness();
    h->dram = static_cast<uint8_t*>(std::calloc(dram_bytes ? dram_bytes : 1, 1));
    if (!h->dram) {
        delete h;
        return nullptr;
    }
    h->dram_size = dram_bytes;
    h->latency = latency < 1 ? 1 : latency;
    h->bpc = bpc_fixed < 1 ? 1 : bpc_fixed;
    h->max_outstanding = max_outstanding < 1 ? 1 : max_outstanding;
    h->csr_timeout = csr_timeout < 1 ? 1 : csr_timeout;
    h->ctx = std::make_unique<VerilatedContext>();
    h->ctx->threads(1);
    const bool want_trace = trace_path && *trace_path;
#ifdef UE_TRACE
    if (want_trace) h->ctx->traceEverOn(true);
#endif
    h->top = std::make_unique<UE_TOP_CLASS>(h->ctx.get(), "ue");
    if (want_trace) {
#ifdef UE_TRACE
        h->trace = std::make_unique<UE_TRACE>();
        h->top->trace(h->trace.get(), 99);
        h->trace->open(trace_path);
        if (!h->trace->isOpen()) {
            h->fail("cannot open the trace file %s", trace_path);
            h->trace.reset();
        }
#else
        h->fail("this model was built without trace support (build it with trace=True)");
#endif
    }
    h->top->UE_P_RST = 1;
    h->tick();
    h->tick();
    h->top->UE_P_RST = 0;
    // The build registers the reset (it keeps the reset mux out of Verilator's per-eval input
    // region); tick until the design has seen the deassertion, and do not count those cycles,
    // so that cycle numbers are the design's own (2 reset cycles, then running).
    for (int i = 0; i < UE_RESET_LATENCY; ++i) h->tick();
    h->cycle -= UE_RESET_LATENCY;
    return h;
}

UE_API void ue_destroy(void* p) {
    Harness* h = static_cast<Harness*>(p);
    if (!h) return;
#ifdef UE_TRACE
    if (h->trace) h->trace->close();
#endif
    h->top->final();
    std::free(h->dram);
    delete h;
}

// Bulk copies into / out of DRAM (no AXI traffic); 0, or -1 if the span is outside DRAM.
UE_API int ue_dram_write(void* p, uint64_t addr, const uint8_t* src, uint64_t n) {
    Harness* h = static_cast<Harness*>(p);
    if (addr > h->dram_size || n > h->dram_size - addr) return -1;
    std::memcpy(h->dram + addr, src, n);
    return 0;
}

UE_API int ue_dram_read(void* p, uint64_t addr, uint8_t* dst, uint64_t n) {
    Harness* h = static_cast<Harness*>(p);
    if (addr > h->dram_size || n > h->dram_size - addr) return -1;
    std::memcpy(dst, h->dram + addr, n);
    return 0;
}

// An AXI4-Lite write (all strobes set); the BRESP code, or -1 on timeout.
UE_API int ue_csr_write(void* p, uint32_t offset, uint32_t value) {
    Harness* h = static_cast<Harness*>(p);
    h->lite = Lite{};
    h->lite.aw = h->lite.w = h->lite.b = true;
    h->lite.addr = offset;
    h->lite.data = value;
    return finish_lite(h, "write", offset);
}

// An AXI4-Lite read into *value; the RRESP code, or -1 on timeout.
UE_API int ue_csr_read(void* p, uint32_t offset, uint32_t* value) {
    Harness* h = static_cast<Harness*>(p);
    h->lite = Lite{};
    h->lite.ar = h->lite.r = true;
    h->lite.addr = offset;
    const int resp = finish_lite(h, "read", offset);
    *value = h->lite.data;
    return resp;
}

// Ticks until `busy` is low, `max_cycles` have passed or an error is recorded; the cycles run.
UE_API uint64_t ue_run(void* p, uint64_t max_cycles) {
    Harness* h = static_cast<Harness*>(p);
    const unsigned errors = h->error_count;
    uint64_t n = 0;
    while (n < max_cycles && h->top->UE_P_BUSY && h->error_count == errors) {
        h->tick();
        ++n;
    }
    return n;
}

UE_API uint64_t ue_cycles(void* p) { return static_cast<Harness*>(p)->cycle; }
UE_API int ue_busy(void* p) { return static_cast<Harness*>(p)->top->UE_P_BUSY ? 1 : 0; }
UE_API int ue_irq(void* p) { return static_cast<Harness*>(p)->top->UE_P_IRQ ? 1 : 0; }

// Read bursts, write bursts, read beats, write beats, most reads / writes in flight at once.
UE_API void ue_stats(void* p, uint64_t* out) {
    std::memcpy(out, static_cast<Harness*>(p)->stats, sizeof(uint64_t) * 6);
}

// Errors recorded since the last call, one per line (copied into buf, NUL-terminated, and
// cleared); returns the number of errors (0: none).
UE_API unsigned ue_take_error(void* p, char* buf, uint64_t size) {
    Harness* h = static_cast<Harness*>(p);
    const unsigned count = h->error_count;
    if (size) {
        const size_t n = std::min<size_t>(h->error.size(), size - 1);
        std::memcpy(buf, h->error.data(), n);
        buf[n] = 0;
    }
    h->error.clear();
    h->error_count = 0;
    return count;
}

// Flag any written byte outside [lo, hi) from now on (the DRAM window of the CSRs).
UE_API void ue_set_window(void* p, uint64_t lo, uint64_t hi) {
    Harness* h = static_cast<Harness*>(p);
    h->window_lo = lo;
    h->window_hi = hi;
}

// Flush the trace file (if any) so that it can be read while the model lives.
UE_API void ue_flush_trace(void* p) {
#ifdef UE_TRACE
    Harness* h = static_cast<Harness*>(p);
    if (h->trace) h->trace->flush();
#else
    (void)p;
#endif
}
