/*
 * The flattened device tree a POWER (pseries) guest of this machine would receive: RAM,
 * one cpu node per vCPU, an interrupt controller, a "virtio,mmio" node per slot, and the
 * protected-execution description (the ultravisor and the secure memory it may use).
 * Built with libfdt's sequential writer.
 */
#include "cc.h"

#include <errno.h>
#include <libfdt.h>
#include <stdio.h>
#include <stdlib.h>

#define FDT_SIZE     (64 * 1024)
#define INTC_PHANDLE 1

static int reg64(void *fdt, uint64_t base, uint64_t size)
{
        fdt64_t cells[2] = {cpu_to_fdt64(base), cpu_to_fdt64(size)};
        return fdt_property(fdt, "reg", cells, sizeof(cells));
}

static int build(void *fdt, const struct platform_desc *desc, uint64_t mem_size,
                 const char *cmdline)
{
        char name[64];
        int r = 0;

#define TRY(x)                                                                                     \
        do {                                                                                       \
                if ((r = (x)) < 0)                                                                 \
                        return r;                                                                  \
        } while (0)

        TRY(fdt_create(fdt, FDT_SIZE));
        TRY(fdt_finish_reservemap(fdt));
        TRY(fdt_begin_node(fdt, ""));
        TRY(fdt_property_string(fdt, "compatible", "cvmm,pef-model"));
        TRY(fdt_property_string(fdt, "model", "CVMM POWER PEF model"));
        TRY(fdt_property_u32(fdt, "#address-cells", 2));
        TRY(fdt_property_u32(fdt, "#size-cells", 2));

        TRY(fdt_begin_node(fdt, "chosen"));
        TRY(fdt_property_string(fdt, "bootargs", cmdline ? cmdline : ""));
        TRY(fdt_end_node(fdt));

        TRY(fdt_begin_node(fdt, "memory@0"));
        TRY(fdt_property_string(fdt, "device_type", "memory"));
        TRY(reg64(fdt, 0, mem_size));
        TRY(fdt_end_node(fdt));

        TRY(fdt_begin_node(fdt, "cpus"));
        TRY(fdt_property_u32(fdt, "#address-cells", 1));
        TRY(fdt_property_u32(fdt, "#size-cells", 0));
        for (unsigned i = 0; i < desc->nr_vcpus; i++) {
                snprintf(name, sizeof(name), "cpu@%u", i);
                TRY(fdt_begin_node(fdt, name));
                TRY(fdt_property_string(fdt, "device_type", "cpu"));
                TRY(fdt_property_string(fdt, "compatible", "IBM,POWER10"));
                TRY(fdt_property_u32(fdt, "reg", i));
                TRY(fdt_end_node(fdt));
        }
        TRY(fdt_end_node(fdt));

        TRY(fdt_begin_node(fdt, "interrupt-controller"));
        TRY(fdt_property_string(fdt, "compatible", "cvmm,intc"));
        TRY(fdt_property(fdt, "interrupt-controller", NULL, 0));
        TRY(fdt_property_u32(fdt, "#address-cells", 0));
        TRY(fdt_property_u32(fdt, "#interrupt-cells", 2));
        TRY(fdt_property_u32(fdt, "phandle", INTC_PHANDLE));
        TRY(fdt_end_node(fdt));

        for (unsigned i = 0; i < desc->nr_devs; i++) {
                const struct platform_dev *d = &desc->devs[i];
                fdt32_t irq[2];

                if (d->kind != PLATFORM_DEV_VIRTIO_MMIO)
                        continue;
                snprintf(name, sizeof(name), "virtio_mmio@%llx", (unsigned long long)d->base);
                TRY(fdt_begin_node(fdt, name));
                TRY(fdt_property_string(fdt, "compatible", "virtio,mmio"));
                TRY(reg64(fdt, d->base, d->len));
                irq[0] = cpu_to_fdt32(d->gsi);
                irq[1] = cpu_to_fdt32(1); /* edge, rising */
                TRY(fdt_property(fdt, "interrupts", irq, sizeof(irq)));
                TRY(fdt_property_u32(fdt, "interrupt-parent", INTC_PHANDLE));
                TRY(fdt_property(fdt, "dma-coherent", NULL, 0));
                TRY(fdt_end_node(fdt));
        }

        /* Protected execution: the ultravisor, and the memory it may make secure (under the
         * ultravisor node, so its unit address does not clash with memory@0). */
        TRY(fdt_begin_node(fdt, "ibm,ultravisor"));
        TRY(fdt_property_string(fdt, "compatible", "ibm,ultravisor"));
        TRY(fdt_property_u32(fdt, "#address-cells", 2));
        TRY(fdt_property_u32(fdt, "#size-cells", 2));
        TRY(fdt_begin_node(fdt, "firmware"));
        TRY(fdt_property_string(fdt, "compatible", "ibm,uv-firmware"));
        TRY(fdt_end_node(fdt));
        TRY(fdt_begin_node(fdt, "secure-memory@0"));
        TRY(fdt_property_string(fdt, "compatible", "ibm,secure-memory"));
        TRY(reg64(fdt, 0, mem_size));
        TRY(fdt_end_node(fdt));
        TRY(fdt_end_node(fdt));

        TRY(fdt_end_node(fdt));
        TRY(fdt_finish(fdt));
#undef TRY
        return 0;
}

int cc_pef_fdt(const struct platform_desc *desc, uint64_t mem_size, const char *cmdline, void **out,
               size_t *len, struct error *err)
{
        void *fdt = malloc(FDT_SIZE);
        int r;

        if (!fdt)
                return error_set(err, -ENOMEM, "out of memory");
        r = build(fdt, desc, mem_size, cmdline);
        if (r < 0) {
                free(fdt);
                return error_set(err, -EINVAL, "building the device tree: %s", fdt_strerror(r));
        }
        *out = fdt;
        *len = fdt_totalsize(fdt);
        return 0;
}
