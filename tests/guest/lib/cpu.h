/*
 * CPU control, atomics and a spinlock, all from the base x86-64 instruction set (the test
 * platform's emulator rejects most extensions; see docs/platform-notes.md).
 */
#ifndef PROBE_CPU_H
#define PROBE_CPU_H

#include <stdint.h>

static inline void cpu_cli(void)
{
        __asm__ __volatile__("cli" : : : "memory");
}

static inline void cpu_sti(void)
{
        __asm__ __volatile__("sti" : : : "memory");
}

/* `sti; hlt` back to back: the interrupt shadow of sti keeps an interrupt that is already
 * pending from firing between the two, so it cannot be lost before the halt. */
static inline void cpu_sti_hlt(void)
{
        __asm__ __volatile__("sti; hlt" : : : "memory");
}

static inline void cpu_pause(void)
{
        __asm__ __volatile__("pause" : : : "memory");
}

_Noreturn static inline void cpu_park(void)
{
        for (;;)
                __asm__ __volatile__("cli; hlt" : : : "memory");
}

static inline uint64_t cpu_rdtsc(void)
{
        uint32_t lo, hi;
        __asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
        return ((uint64_t)hi << 32) | lo;
}

static inline void cpu_wrmsr(uint32_t msr, uint64_t v)
{
        __asm__ __volatile__("wrmsr"
                             :
                             : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32))
                             : "memory");
}

static inline uint64_t cpu_rdmsr(uint32_t msr)
{
        uint32_t lo, hi;

        __asm__ __volatile__("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr) : "memory");
        return ((uint64_t)hi << 32) | lo;
}

static inline uint64_t cpu_read_cr2(void)
{
        uint64_t v;
        __asm__ __volatile__("mov %%cr2, %0" : "=r"(v));
        return v;
}

/* Returns the previous value of *p after adding v, atomically (`lock xadd`). */
static inline uint32_t atomic_fetch_add32(volatile uint32_t *p, uint32_t v)
{
        __asm__ __volatile__("lock xaddl %0, %1" : "+r"(v), "+m"(*p) : : "memory");
        return v;
}

static inline uint32_t atomic_load32(const volatile uint32_t *p)
{
        return *p;
}

/* `xchg` with memory is implicitly locked. */
static inline uint32_t atomic_xchg32(volatile uint32_t *p, uint32_t v)
{
        __asm__ __volatile__("xchgl %0, %1" : "+r"(v), "+m"(*p) : : "memory");
        return v;
}

struct spinlock {
        volatile uint32_t locked;
};

static inline void spin_lock(struct spinlock *l)
{
        while (atomic_xchg32(&l->locked, 1))
                while (atomic_load32(&l->locked))
                        cpu_pause();
}

static inline void spin_unlock(struct spinlock *l)
{
        /* x86 stores are not reordered with earlier loads or stores: a compiler barrier and a
         * plain store release the lock. */
        __asm__ __volatile__("" : : : "memory");
        l->locked = 0;
}

#endif
