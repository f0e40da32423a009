import enum


class CpuVendor(enum.Enum):
    ARM = "ARM"
    INTEL = "Intel"
    AMD = "AMD"


def get_cpu_vendor():
    text = open("/proc/cpuinfo").read()
    return CpuVendor.INTEL if "GenuineIntel" in text else CpuVendor.AMD
