"""Small wheels (and one sdist) built by the tests themselves, so REQUIREMENTS is tested without
the network: the server is started with `RequirementsIndexUrl none RequirementsFindLinks <dir>`.

`toy_index(dir)` writes:
  gbtoy 1.0 / 2.0       pure Python: VERSION, f() ('one' / 'two'), a data file
  gbdep 1.0             pure Python, depends on gbtoy==1.0
  gbnative 1.0          a platform wheel holding a (fake) compiled extension
  gbsdist 1.0           an sdist only, whose setup.py would write a marker file if pip ran it
  gbbig 1.0             3 MiB of incompressible data (for RequirementsMaxMB)
"""
import base64
import hashlib
import io
import os
import tarfile
import zipfile


def make_wheel(dest, name, version, files, requires=(), tag="py3-none-any"):
    dist = f"{name}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(f"Requires-Dist: {r}\n" for r in requires)
    purelib = "true" if tag.endswith("-none-any") else "false"
    wheel = f"Wheel-Version: 1.0\nGenerator: gearbox-tests\nRoot-Is-Purelib: {purelib}\nTag: {tag}\n"
    contents = dict(files)
    contents[f"{dist}/METADATA"] = meta
    contents[f"{dist}/WHEEL"] = wheel
    record = []
    path = os.path.join(dest, f"{name}-{version}-{tag}.whl")
    with zipfile.ZipFile(path, "w") as z:
        for p, c in contents.items():
            data = c.encode() if isinstance(c, str) else c
            z.writestr(p, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{p},sha256={digest},{len(data)}")
        record.append(f"{dist}/RECORD,,")
        z.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return path


def make_sdist(dest, name, version, marker):
    setup = f"open({marker!r}, 'w').write('setup.py ran')\nfrom setuptools import setup\nsetup(name={name!r}, version={version!r})\n"
    files = {"setup.py": setup, "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"}
    path = os.path.join(dest, f"{name}-{version}.tar.gz")
    with tarfile.open(path, "w:gz") as t:
        for p, c in files.items():
            data = c.encode()
            info = tarfile.TarInfo(f"{name}-{version}/{p}")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def toy_index(dest, sdist_marker):
    os.makedirs(dest, exist_ok=True)
    for version, word in (("1.0", "one"), ("2.0", "two")):
        make_wheel(dest, "gbtoy", version, {
            "gbtoy/__init__.py": f"VERSION = {version!r}\nfrom gbtoy.sub import f\n",
            "gbtoy/sub.py": f"def f():\n    return {word!r}\n",
            "gbtoy/data.txt": f"data {version}",
        })
    make_wheel(dest, "gbdep", "1.0", {"gbdep/__init__.py": "import gbtoy\nWHO = 'dep on ' + gbtoy.VERSION\n"},
               requires=["gbtoy==1.0"])
    make_wheel(dest, "gbnative", "1.0", {"gbnative/__init__.py": "NATIVE = True\n",
                                         "gbnative/_speedups.cpython-313-x86_64-linux-gnu.so": b"\x7fELF not really"},
               tag="cp313-cp313-linux_x86_64")
    make_sdist(dest, "gbsdist", "1.0", sdist_marker)
    make_wheel(dest, "gbbig", "1.0", {"gbbig/__init__.py": "", "gbbig/blob.bin": os.urandom(3 << 20)})
    return dest
