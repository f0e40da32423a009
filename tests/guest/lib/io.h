/*
 * Port I/O and MMIO accessors. MMIO goes through inline asm so every access is exactly one
 * plain `mov` of the stated width: the compiler may not merge, split or widen it, and a
 * hypervisor that decodes the faulting instruction (KVM's emulator, SEV-ES #VC handlers)
 * always sees a simple form.
 */
#ifndef PROBE_IO_H
#define PROBE_IO_H

#include <stdint.h>

static inline void outb(uint16_t port, uint8_t v)
{
        __asm__ __volatile__("outb %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

static inline void outw(uint16_t port, uint16_t v)
{
        __asm__ __volatile__("outw %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

static inline void outl(uint16_t port, uint32_t v)
{
        __asm__ __volatile__("outl %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

static inline uint8_t inb(uint16_t port)
{
        uint8_t v;
        __asm__ __volatile__("inb %1, %0" : "=a"(v) : "Nd"(port) : "memory");
        return v;
}

static inline uint16_t inw(uint16_t port)
{
        uint16_t v;
        __asm__ __volatile__("inw %1, %0" : "=a"(v) : "Nd"(port) : "memory");
        return v;
}

static inline uint32_t inl(uint16_t port)
{
        uint32_t v;
        __asm__ __volatile__("inl %1, %0" : "=a"(v) : "Nd"(port) : "memory");
        return v;
}

static inline uint8_t mmio_read8(uint64_t addr)
{
        uint8_t v;
        __asm__ __volatile__("movb %1, %0" : "=q"(v) : "m"(*(volatile uint8_t *)addr) : "memory");
        return v;
}

static inline uint16_t mmio_read16(uint64_t addr)
{
        uint16_t v;
        __asm__ __volatile__("movw %1, %0" : "=r"(v) : "m"(*(volatile uint16_t *)addr) : "memory");
        return v;
}

static inline uint32_t mmio_read32(uint64_t addr)
{
        uint32_t v;
        __asm__ __volatile__("movl %1, %0" : "=r"(v) : "m"(*(volatile uint32_t *)addr) : "memory");
        return v;
}

static inline uint64_t mmio_read64(uint64_t addr)
{
        uint64_t v;
        __asm__ __volatile__("movq %1, %0" : "=r"(v) : "m"(*(volatile uint64_t *)addr) : "memory");
        return v;
}

static inline void mmio_write8(uint64_t addr, uint8_t v)
{
        __asm__ __volatile__("movb %1, %0" : "=m"(*(volatile uint8_t *)addr) : "q"(v) : "memory");
}

static inline void mmio_write16(uint64_t addr, uint16_t v)
{
        __asm__ __volatile__("movw %1, %0" : "=m"(*(volatile uint16_t *)addr) : "r"(v) : "memory");
}

static inline void mmio_write32(uint64_t addr, uint32_t v)
{
        __asm__ __volatile__("movl %1, %0" : "=m"(*(volatile uint32_t *)addr) : "r"(v) : "memory");
}

static inline void mmio_write64(uint64_t addr, uint64_t v)
{
        __asm__ __volatile__("movq %1, %0" : "=m"(*(volatile uint64_t *)addr) : "r"(v) : "memory");
}

#endif
