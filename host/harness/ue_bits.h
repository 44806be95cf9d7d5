// Bit-field access to Verilator port values of any width.
//
// Verilator stores a port of <= 8 / 16 / 32 / 64 bits as CData / SData / IData / QData and a
// wider one as VlWide<N> (N 32-bit words, least significant first).  The field positions of
// the AXI payloads are generated from the Amaranth layouts into ue_ports.h as "lsb, width"
// pairs, so the harness reads and writes every field through these two overload sets and
// never hard-codes an offset.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "verilated.h"

static inline uint64_t ue_mask(int width) {
    return width >= 64 ? ~uint64_t(0) : (uint64_t(1) << width) - 1;
}

// ----- ports of at most 64 bits ---------------------------------------------------------------

template <class T, std::enable_if_t<std::is_integral<T>::value, int> = 0>
static inline uint64_t ue_get(const T& port, int lsb, int width) {
    return (static_cast<uint64_t>(port) >> lsb) & ue_mask(width);
}

template <class T, std::enable_if_t<std::is_integral<T>::value, int> = 0>
static inline void ue_set(T& port, int lsb, int width, uint64_t value) {
    const uint64_t m = ue_mask(width) << lsb;
    port = static_cast<T>((static_cast<uint64_t>(port) & ~m) | ((value << lsb) & m));
}

// ----- wide ports (fields of at most 64 bits at any bit position) -----------------------------

template <std::size_t N>
static inline uint64_t ue_get(const VlWide<N>& port, int lsb, int width) {
    uint64_t out = 0;
    for (int done = 0; done < width;) {
        const int bit = lsb + done, shift = bit % 32;
        const int take = std::min(32 - shift, width - done);
        out |= ((static_cast<uint64_t>(port.at(bit / 32)) >> shift) & ue_mask(take)) << done;
        done += take;
    }
    return out;
}

template <std::size_t N>
static inline void ue_set(VlWide<N>& port, int lsb, int width, uint64_t value) {
    for (int done = 0; done < width;) {
        const int bit = lsb + done, shift = bit % 32;
        const int take = std::min(32 - shift, width - done);
        const uint32_t m = static_cast<uint32_t>(ue_mask(take) << shift);
        const uint32_t v = static_cast<uint32_t>(((value >> done) & ue_mask(take)) << shift);
        port.at(bit / 32) = (port.at(bit / 32) & ~m) | v;
        done += take;
    }
}

// ----- byte strings (AXI data fields, any width that is a whole number of bytes) --------------
// Moved 64 bits at a time: the host is little-endian, like the byte order of an AXI beat.

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the harness needs a little-endian host");

template <class P>
static inline void ue_get_bytes(const P& port, int lsb, int width, uint8_t* out) {
    const int n = width / 8;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const uint64_t v = ue_get(port, lsb + 8 * i, 64);
        std::memcpy(out + i, &v, 8);
    }
    for (; i < n; ++i) out[i] = static_cast<uint8_t>(ue_get(port, lsb + 8 * i, 8));
}

template <class P>
static inline void ue_set_bytes(P& port, int lsb, int width, const uint8_t* in) {
    const int n = width / 8;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        std::memcpy(&v, in + i, 8);
        ue_set(port, lsb + 8 * i, 64, v);
    }
    for (; i < n; ++i) ue_set(port, lsb + 8 * i, 8, in[i]);
}

// One byte (0 / 1) per bit of the field: AXI write strobes of any data width.
template <class P>
static inline void ue_get_flags(const P& port, int lsb, int width, uint8_t* out) {
    for (int i = 0; i < width; i += 64) {
        const int take = std::min(64, width - i);
        const uint64_t bits = ue_get(port, lsb + i, take);
        for (int j = 0; j < take; ++j) out[i + j] = static_cast<uint8_t>(bits >> j & 1);
    }
}

// ----- whole-port comparison (payload stability checks) ---------------------------------------

template <class T, std::enable_if_t<std::is_integral<T>::value, int> = 0>
static inline bool ue_same(const T& a, const T& b) { return a == b; }

template <std::size_t N>
static inline bool ue_same(const VlWide<N>& a, const VlWide<N>& b) { return !(a != b); }

