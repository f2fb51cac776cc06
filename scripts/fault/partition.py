"""Network partitions and bad networks, in network namespaces this script
creates: Redis, two herald nodes and a lossy subscriber each in their own
namespace, joined by veth pairs to a bridge in a namespace of its own (the
driver, in the root namespace, joins the bridge too). Phases: node A cut
from Redis for 10 s (iptables DROP), then 200 ms of latency (a delaying
proxy in front of Redis: this kernel has no sch_netem) and 5 % packet loss
(iptables statistic) on node A for 10 s, with a subscriber behind a 5 %
lossy link the whole time. Checks: no acknowledged publish lost or
duplicated, gaps reported where history moved on, /readyz failing while
cut; measures recovery. Needs root. Cleans up what it created."""

import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import (  # noqa: E402
    Processes, Publisher, Subscriber, check, get, herald_bin, log, report, wait_until,
)

NET = "hf-net"
HOSTS = {"hf-redis": 1, "hf-a": 2, "hf-b": 3, "hf-sub": 4}
CHANNEL = "part"
WORK = os.environ.get("FAULTS_WORK", "/tmp/herald-faults")


def sh(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True)


def ns(name, *args, check=True):
    return sh("ip", "netns", "exec", name, *args, check=check)


def setup():
    teardown()
    sh("ip", "netns", "add", NET)
    ns(NET, "ip", "link", "set", "lo", "up")
    ns(NET, "ip", "link", "add", "hfbr", "type", "bridge")
    ns(NET, "ip", "link", "set", "hfbr", "up")
    for name, last in HOSTS.items():
        sh("ip", "netns", "add", name)
        ns(name, "ip", "link", "set", "lo", "up")
        port = f"hfv{last}"
        sh("ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", name)
        sh("ip", "link", "set", port, "netns", NET)
        ns(NET, "ip", "link", "set", port, "master", "hfbr", "up")
        ns(name, "ip", "addr", "add", f"10.77.0.{last}/24", "dev", "eth0")
        ns(name, "ip", "link", "set", "eth0", "up")
    sh("ip", "link", "add", "hfv-root", "type", "veth", "peer", "name", "hfv254", "netns", NET)
    ns(NET, "ip", "link", "set", "hfv254", "master", "hfbr", "up")
    sh("ip", "addr", "add", "10.77.0.254/24", "dev", "hfv-root")
    sh("ip", "link", "set", "hfv-root", "up")


def teardown():
    sh("ip", "link", "del", "hfv-root", check=False)
    for name in [*HOSTS, NET]:
        sh("ip", "netns", "del", name, check=False)


def lossy(name, on, probability=0.05):
    ns(name, "iptables", "-F", check=False)
    if on:
        for chain in ("INPUT", "OUTPUT"):
            ns(name, "iptables", "-A", chain, "-m", "statistic", "--mode", "random",
               "--probability", str(probability), "-j", "DROP")


def cut(name, on):
    ns(name, "iptables", "-F", check=False)
    if on:
        ns(name, "iptables", "-A", "OUTPUT", "-d", "10.77.0.1", "-j", "DROP")
        ns(name, "iptables", "-A", "INPUT", "-s", "10.77.0.1", "-j", "DROP")


def subscriber_process():
    """`partition.py subscribe HOST PORT OUT STOP`: a subscriber run inside a namespace."""
    host, port, out, stop = sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
    subscriber = Subscriber(host, port, CHANNEL)
    subscriber.start()
    while not os.path.exists(stop):
        time.sleep(0.1)
    subscriber.stop.set()
    with open(out, "w") as f:
        json.dump({"seen": subscriber.seen, "reconnects": subscriber.reconnects}, f)


def readiness_during(base, seconds):
    statuses = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        statuses.append((time.monotonic(), get(f"{base}/readyz", timeout=4)[0]))
        time.sleep(0.25)
    return statuses


def recovery(base, publisher, since):
    """Seconds from `since` until /readyz is 200 and the publisher got an ack after it."""
    wait_until("/readyz 200 again", lambda: get(f"{base}/readyz", timeout=1)[0] == 200, 60)
    ready = time.monotonic() - since
    wait_until("a publish acknowledged again", lambda: any(a[2] > since for a in publisher.acks), 60)
    acked = min(a[2] for a in publisher.acks if a[2] > since) - since
    return round(ready, 2), round(acked, 2)


def main():
    if os.geteuid() != 0:
        sys.exit("partition.py needs root (network namespaces, iptables)")
    os.makedirs(WORK, exist_ok=True)
    processes = Processes()
    stop_file = f"{WORK}/sub.stop"
    for path in (stop_file, f"{WORK}/sub.json"):
        if os.path.exists(path):
            os.remove(path)
    herald = os.path.abspath(herald_bin())
    try:
        setup()
        processes.start(["ip", "netns", "exec", "hf-redis", "redis-server", "--bind", "10.77.0.1",
                         "--port", "6379", "--save", "", "--appendonly", "no",
                         "--protected-mode", "no"], f"{WORK}/redis.log")
        proxy = processes.start(["ip", "netns", "exec", "hf-a", sys.executable,
                                 os.path.join(os.path.dirname(__file__), "lagproxy.py"),
                                 "127.0.0.1:6380", "10.77.0.1:6379", "200"], f"{WORK}/proxy.log")
        common = ["--sse-heartbeat", "1s", "--connection-rate", "0", "--publish-rate", "0",
                  "--history-size", "200", "--log-level", "info"]
        processes.start(["ip", "netns", "exec", "hf-a", herald, "serve", "--listen", "10.77.0.2:8080",
                         "--redis", "redis://127.0.0.1:6380/", *common], f"{WORK}/herald-a.log")
        processes.start(["ip", "netns", "exec", "hf-b", herald, "serve", "--listen", "10.77.0.3:8080",
                         "--redis", "redis://10.77.0.1:6379/", *common], f"{WORK}/herald-b.log")
        a, b = "http://10.77.0.2:8080", "http://10.77.0.3:8080"
        for base in (a, b):
            wait_until(f"{base}/readyz", lambda base=base: get(f"{base}/readyz")[0] == 200, 20)
        lossy("hf-sub", True)
        processes.start(["ip", "netns", "exec", "hf-sub", sys.executable, __file__, "subscribe",
                         "10.77.0.3", "8080", f"{WORK}/sub.json", stop_file], f"{WORK}/sub.log")
        subscribers = {"on-a": Subscriber("10.77.0.2", 8080, CHANNEL),
                       "on-b": Subscriber("10.77.0.3", 8080, CHANNEL)}
        for s in subscribers.values():
            s.start()
        warmup = Publisher(b, CHANNEL, "warmup")
        warmup.publish("warmup")
        wait_until("3 subscribers on the channel",
                   lambda: ((get(f"{b}/pub/{CHANNEL}")[1] or {}).get("subscribers") or 0) >= 3, 20)
        pa, pb = Publisher(a, CHANNEL, "pa"), Publisher(b, CHANNEL, "pb")
        pa.start()
        pb.start()
        time.sleep(3)  # steady traffic before the fault (a phase length, not a synchronisation)

        log("cut node a from Redis for 10 s")
        cut("hf-a", True)
        cut_at = time.monotonic()
        statuses = readiness_during(a, 10)
        cut("hf-a", False)
        healed = time.monotonic()
        unready = [t - cut_at for t, s in statuses if s == 503]
        cut_ready, cut_acked = recovery(a, pa, healed)
        log(f"healed: /readyz 200 after {cut_ready} s, a publish acknowledged after {cut_acked} s")

        log("200 ms latency + 5 % loss on node a for 10 s")
        proxy.send_signal(signal.SIGUSR1)
        lossy("hf-a", True)
        bad_at = time.monotonic()
        before = len(pa.acks)
        bad_statuses = readiness_during(a, 10)
        acked_while_bad = len(pa.acks) - before
        proxy.send_signal(signal.SIGUSR2)
        lossy("hf-a", False)
        healed2 = time.monotonic()
        bad_ready, bad_acked = recovery(a, pa, healed2)
        log(f"healed: /readyz 200 after {bad_ready} s, a publish acknowledged after {bad_acked} s")

        time.sleep(2)
        for p in (pa, pb):
            p.stop.set()
        for p in (pa, pb):
            p.join(130)
        acks = pa.acks + pb.acks
        wanted = {a_[1] for a_ in acks}
        try:
            wait_until("subscribers to catch up", lambda: all(wanted <= s.ids() for s in subscribers.values()), 30)
        except TimeoutError as error:
            log(error)
        time.sleep(3)  # the lossy subscriber's own catch-up, read from its file below
        open(stop_file, "w").close()
        wait_until("the lossy subscriber's log", lambda: os.path.exists(f"{WORK}/sub.json"), 15)
        with open(f"{WORK}/sub.json") as f:
            lossy_log = json.load(f)
        logs = {name: s.seen for name, s in subscribers.items()}
        logs["lossy-on-b"] = [tuple(x) for x in lossy_log["seen"]]
        problems = {name: check(seen, acks) for name, seen in logs.items()}
        for name, found in problems.items():
            for problem in found[:20]:
                log(f"PROBLEM {name}: {problem}")
        failures = [p for p in (pa.failed, pb.failed) if p]
        for failure in failures:
            log(f"PROBLEM publisher: {failure}")

        def count(word):
            return sum(1 for found in problems.values() for p in found if word in p)

        gaps = {name: sum(1 for x in seen if x[0] == "gap") for name, seen in logs.items()}
        base = {"acknowledged": len(acks), "lost": count("no gap reported"),
                "duplicates": count("twice"), "disorder": count("out of order") + count("new epoch")}
        report({**base, "fault": "node a cut from Redis for 10 s",
                "readyz_503_after_s": round(unready[0], 2) if unready else None,
                "readyz_503_samples": len(unready), "readyz_samples": len(statuses),
                "recovery_readyz_s": cut_ready, "recovery_first_ack_s": cut_acked,
                "gaps_reported": gaps, "refused_a": pa.refused, "refused_b": pb.refused})
        report({**base, "fault": "200 ms latency + 5 % loss on node a for 10 s",
                "acked_on_a_while_bad": acked_while_bad,
                "readyz_not_200_samples": sum(1 for _, s in bad_statuses if s != 200),
                "recovery_readyz_s": bad_ready, "recovery_first_ack_s": bad_acked})
        report({"fault": "subscriber behind 5 % loss (SSE, resumes with Last-Event-ID)",
                "acknowledged": len(acks), "lost": sum(1 for p in problems["lossy-on-b"] if "no gap" in p),
                "duplicates": sum(1 for p in problems["lossy-on-b"] if "twice" in p),
                "reconnects": lossy_log["reconnects"], "gaps_reported": gaps["lossy-on-b"]})
        ok = not failures and all(not found for found in problems.values())
        return 0 if ok else 1
    finally:
        if not os.path.exists(stop_file):
            open(stop_file, "w").close()
        processes.stop_all()
        teardown()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "subscribe":
        subscriber_process()
    else:
        sys.exit(main())
