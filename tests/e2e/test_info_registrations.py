"""INFO rg: `rg_nregistrations` and the `rg_regisrations` section (spec §1.3: one dict field per
registration with its description, reader, stats and session PD, `,` replaced by `|`)."""
from gb_helpers import script

FAILING = script("""
    GB('CommandReader', desc='mine, with a comma').map(lambda r: 1 / 0).register(trigger='t')
""")


def test_one_line_per_registration_with_its_stats(r):
    assert r.execute_command("RG.PYEXECUTE", FAILING, "ID", "infosession") == "OK"
    reg_id = r.execute_command("RG.DUMPREGISTRATIONS")[0][1]
    try:
        r.execute_command("RG.TRIGGER", "t")
    except Exception as e:  # noqa: BLE001 - the trigger fails on purpose
        assert "ZeroDivisionError" in str(e)
    info = r.info("rg")
    assert info["rg_nregistrations"] == 1
    line = info[f"rg_{reg_id}"]
    assert line["reader"] == "CommandReader" and line["mode"] == "async"
    assert line["desc"] == "mine| with a comma"
    assert (line["numTriggered"], line["numSuccess"], line["numFailures"]) == (1, 0, 1)
    assert "ZeroDivisionError" in line["lastError"] and "," not in line["lastError"]
    assert "'sessionName':'infosession'" in line["PD"]
    assert r.execute_command("RG.UNREGISTER", reg_id) == "OK"
    info = r.info("rg")
    assert info["rg_nregistrations"] == 0 and f"rg_{reg_id}" not in info
