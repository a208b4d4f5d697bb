"""The standard-library modules every interpreter imports at start-up (the codec registry, `types`)
come from memory in native mode (frozen at load), and the rest of the standard library still
imports from disk: codecs outside the frozen set, `encodings` submodules, other modules."""
from gb_helpers import run_ok

CHECK = """
import codecs, encodings, sys, types
def probe(_):
    return repr([
        encodings.__spec__.origin, types.__spec__.origin,
        'é€'.encode('cp1252'), b'\\xe9'.decode('latin-1'), 'ü'.encode('utf-16-le'),
        codecs.lookup('idna').name, __import__('encodings.punycode').punycode.__name__,
        __import__('json').dumps({'a': 1}), len(encodings.__path__),
    ])
GB('ShardsIDReader').map(probe).run()
"""


def test_codecs_and_the_standard_library_still_import(r, mode):
    origins_and_rest = eval(run_ok(r, CHECK)[0])
    encodings_origin, types_origin, *rest = origins_and_rest
    assert rest == [b"\xe9\x80", "\xe9", b"\xfc\x00", "idna", "encodings.punycode", '{"a": 1}', 1]
    if mode == "native":
        assert (encodings_origin, types_origin) == ("frozen", "frozen")
    else:
        assert encodings_origin != "frozen"  # the wasm guest brings its own standard library
