#!/usr/bin/env python3
"""A real user agent (pjsua2, PyPI `pjsua2-python`) through sipforge's digest
authentication, run by tests/pjsua_auth.rs.

Registers `--user` with `--password` (REGISTER -> 401 -> REGISTER with
Authorization -> 200) at the proxy, then calls sip:service@127.0.0.1:UAS_PORT
(a sipp UAS) through the proxy as the outbound proxy (INVITE -> 407 -> ACK ->
INVITE with Proxy-Authorization -> 180 -> 200 -> ACK), hangs up (BYE -> 200)
and exits. No sound device (null audio), everything bound to 127.0.0.1.

Prints one line per step, for the test to read:
  REGISTERED code=200 auth=<the Authorization the proxy echoed in X-Auth-Seen>
  CALL CONFIRMED
  CALL DISCONNECTED code=<last status>
  OK
Exit status: 0 success; 1 a step failed or timed out (the reason on stderr);
77 pjsua2 cannot be imported (the test skips, or fails on CI).
"""

import argparse
import sys
import time

try:
    import pjsua2 as pj
except Exception as e:  # ImportError, or a broken shared library
    print(f"pjsua2 unavailable: {e!r}", file=sys.stderr)
    sys.exit(77)


def header(msg, name):
    """The first value of header `name` in the SIP message text `msg`."""
    for line in msg.replace("\r\n", "\n").split("\n")[1:]:
        if not line:
            break
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == name.lower():
            return value.strip()
    return ""


class Account(pj.Account):
    def __init__(self):
        super().__init__()
        self.reg_code = None
        self.reg_msg = ""

    def onRegState(self, prm):
        # 401 challenges are answered inside pjsip; only the end shows here.
        self.reg_code = prm.code
        self.reg_msg = prm.rdata.wholeMsg if prm.rdata else ""


class Call(pj.Call):
    def __init__(self, acc):
        super().__init__(acc)
        self.state = None
        self.code = None

    def onCallState(self, prm):
        info = self.getInfo()
        self.state = info.state
        self.code = info.lastStatusCode


def wait(ep, what, done, limit):
    deadline = time.monotonic() + limit
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {limit} s")
        ep.libHandleEvents(20)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--proxy", required=True, help="the proxy, 127.0.0.1:PORT")
    ap.add_argument("--uas-port", type=int, help="the sipp UAS port (no call without it)")
    ap.add_argument("--user", default="alice")
    ap.add_argument("--password", required=True)
    ap.add_argument("--domain", default="sipforge.test")
    ap.add_argument("--log", help="pjsip's log file (level 5)")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per step")
    args = ap.parse_args()

    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    # Callbacks from this thread only (ep.libHandleEvents): no pjsip threads
    # calling into Python.
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.uaConfig.userAgent = "sipforge-test-pjsua2"
    cfg.logConfig.consoleLevel = 0
    if args.log:
        cfg.logConfig.level = 5
        cfg.logConfig.filename = args.log
    else:
        cfg.logConfig.level = 0
    cfg.medConfig.noVad = True
    ep.libInit(cfg)
    tcfg = pj.TransportConfig()
    tcfg.port = 0
    tcfg.boundAddress = "127.0.0.1"
    tcfg.publicAddress = "127.0.0.1"
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.audDevManager().setNullDev()
    ep.libStart()

    ok = False
    try:
        acfg = pj.AccountConfig()
        acfg.idUri = f"sip:{args.user}@{args.domain}"
        acfg.regConfig.registrarUri = f"sip:{args.proxy}"
        acfg.regConfig.timeoutSec = 300
        acfg.sipConfig.proxies.append(f"sip:{args.proxy};lr")
        acfg.sipConfig.authCreds.append(
            pj.AuthCredInfo("digest", "*", args.user, 0, args.password)
        )
        acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
        acfg.mediaConfig.transportConfig.publicAddress = "127.0.0.1"
        acfg.natConfig.iceEnabled = False
        acfg.natConfig.sipStunUse = pj.PJSUA_STUN_USE_DISABLED
        acfg.natConfig.mediaStunUse = pj.PJSUA_STUN_USE_DISABLED
        acc = Account()
        acc.create(acfg)
        wait(ep, "registration", lambda: acc.reg_code is not None, args.timeout)
        if acc.reg_code != 200:
            raise RuntimeError(f"REGISTER ended with {acc.reg_code}:\n{acc.reg_msg}")
        print(f"REGISTERED code=200 auth={header(acc.reg_msg, 'X-Auth-Seen')}", flush=True)

        if args.uas_port:
            call = Call(acc)
            prm = pj.CallOpParam(True)
            call.makeCall(f"sip:service@127.0.0.1:{args.uas_port}", prm)
            wait(
                ep,
                "call",
                lambda: call.state
                in (pj.PJSIP_INV_STATE_CONFIRMED, pj.PJSIP_INV_STATE_DISCONNECTED),
                args.timeout,
            )
            if call.state != pj.PJSIP_INV_STATE_CONFIRMED:
                raise RuntimeError(f"the call ended with {call.code} before it was answered")
            print("CALL CONFIRMED", flush=True)
            call.hangup(pj.CallOpParam())
            wait(
                ep,
                "hang-up",
                lambda: call.state == pj.PJSIP_INV_STATE_DISCONNECTED,
                args.timeout,
            )
            print(f"CALL DISCONNECTED code={call.code}", flush=True)
            del call
        # Unregister quietly (no wait: the proxy answers it like any REGISTER).
        acc.shutdown()
        ok = True
        print("OK", flush=True)
    except Exception as e:
        print(f"FAILED: {e}", file=sys.stderr, flush=True)
    finally:
        ep.libDestroy()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
