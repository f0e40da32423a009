"""The part of python-semver test_api.py uses (Version.parse, ==)."""


class Version(str):
    @classmethod
    def parse(cls, s):
        s = str(s)
        core = s.split("-")[0].split("+")[0].split(".")
        if len(core) != 3 or not all(p.isdigit() for p in core):
            raise ValueError(f"{s} is not valid SemVer string")
        return cls(s)
