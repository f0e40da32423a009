import subprocess


class Tap:
    def __init__(self, name, netns, ip=None):
        self.name = name
        self.netns = netns
        subprocess.run(["ip", "netns", "exec", netns, "ip", "tuntap", "add", "dev", name, "mode",
                        "tap"], check=True)
        subprocess.run(["ip", "netns", "exec", netns, "ip", "link", "set", name, "up"],
                       check=True)


def mac_from_ip(ip_address):
    return "06:00:" + ":".join(f"{int(o):02X}" for o in ip_address.split("."))
