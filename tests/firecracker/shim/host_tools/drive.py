import os


class FilesystemFile:
    """A zeroed file standing for an ext4 image (the probe guest does not mount it)."""

    def __init__(self, path=None, size=256, fs_format="ext4"):
        path = path + "." + fs_format
        if os.path.isfile(path):
            raise FileExistsError(path)
        with open(path, "wb") as f:
            f.truncate(size << 20)
        self.path = path
