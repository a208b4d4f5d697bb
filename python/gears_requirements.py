"""REQUIREMENTS inside one interpreter: the host installed them (src/host/pip.rs) and hands this
interpreter the ones its session asked for, before the script runs. Only this interpreter sees
them, so two sessions can use two versions of one package.

Native mode gets directories (put first on sys.path). A wasm guest has no file system: it gets
each requirement as a dict of its files ({relative path: bytes}), served from memory by a
finder on sys.meta_path; `__file__` names a path under /gearbox-requirements/ that does not
exist anywhere, and `get_data` (pkgutil.get_data) reads the same dict.
"""
import importlib
import importlib.machinery
import importlib.util
import sys


class _FilesLoader:
    def __init__(self, files, prefix, key, package):
        self._files, self._prefix, self._key, self._package = files, prefix, key, package

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        exec(compile(self.get_source(module.__name__), self._prefix + self._key, "exec"), module.__dict__)

    def is_package(self, fullname):
        return self._package

    def get_source(self, fullname):
        return importlib.util.decode_source(self._files[self._key])

    def get_data(self, path):
        key = path[len(self._prefix):] if path.startswith(self._prefix) else path
        try:
            return self._files[key]
        except KeyError:
            raise FileNotFoundError(path) from None


class _FilesFinder:
    """Finds modules among one requirement's files."""

    def __init__(self, name, files):
        self._files = files
        self._prefix = "/gearbox-requirements/%s/" % name

    def find_spec(self, fullname, path=None, target=None):
        base = fullname.replace(".", "/")
        for key, package in ((base + "/__init__.py", True), (base + ".py", False)):
            if key in self._files:
                loader = _FilesLoader(self._files, self._prefix, key, package)
                spec = importlib.machinery.ModuleSpec(fullname, loader, origin=self._prefix + key, is_package=package)
                if package:
                    spec.submodule_search_locations = [self._prefix + base]
                spec.has_location = True
                return spec
        return None

    def invalidate_caches(self):
        pass


def use(roots):
    """Make the requirements `roots` importable here, the first one first: each is a directory
    or a [name, [[relative path, bytes], ...]] pair."""
    directories = False
    for root in reversed(roots):
        if isinstance(root, str):
            sys.path.insert(0, root)
            directories = True
        else:
            name, files = root
            name = name.decode("utf-8") if isinstance(name, bytes) else name
            sys.meta_path.insert(0, _FilesFinder(name, {p.decode("utf-8") if isinstance(p, bytes) else p: f for p, f in files}))
    if directories:
        importlib.invalidate_caches()  # (in the guest it would import importlib.metadata, which it lacks)
