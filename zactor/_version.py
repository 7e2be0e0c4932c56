__version__ = "0.1.0"


def peer_versions() -> dict:
    """What every HELLO and NODE_HELLO carries, for the head to check (see incompatibility)."""
    import sys

    from zactor.protocol import VERSION

    return {"zactor_version": __version__, "protocol": VERSION,
            "python": ".".join(map(str, sys.version_info[:3]))}


def incompatibility(info: dict) -> str | None:
    """Why a peer that sent ``info`` cannot join this process's cluster, naming both sides'
    versions; None if it can. Python must agree to the minor version (pickles of functions
    are not portable across minor versions); a different patch release is fine."""
    mine = peer_versions()
    theirs = {k: info.get(k) for k in mine} if isinstance(info, dict) else {}
    if theirs.get("zactor_version") != mine["zactor_version"] or \
            theirs.get("protocol") != mine["protocol"]:
        return (f"version mismatch: this peer runs zactor {theirs.get('zactor_version')} "
                f"(protocol {theirs.get('protocol')}), the head runs zactor "
                f"{mine['zactor_version']} (protocol {mine['protocol']}); install the same "
                "zactor version on every machine of the cluster")
    py = str(theirs.get("python") or "")
    if py.split(".")[:2] != mine["python"].split(".")[:2]:
        return (f"Python version mismatch: this peer runs Python {py or 'unknown'}, the head "
                f"runs Python {mine['python']}; every machine needs the same Python minor "
                "version (patch releases may differ)")
    return None
