"""A scripted DNS server on loopback for black-box tests (python3-dnslib).

DNSTestServer serves the names it is given, over UDP and TCP on one
ephemeral 127.0.0.1 port, as an authoritative server and a forwarder target
for Tern's `dns_forwarders = 127.0.0.1@PORT`. Records are a dict from name to
a list of (type, value):

    {
        "example.test": [("MX", (10, "mx1.example.test")), ("A", "192.0.2.1")],
        "mx1.example.test": [("A", "192.0.2.25"), ("AAAA", "2001:db8::25")],
        "alias.example.test": [("CNAME", "mx1.example.test")],
        "nullmx.test": [("MX", (0, "."))],
        "txt.test": [("TXT", "v=spf1 -all")],
    }

A name with records answers them (a CNAME is followed inside the data, as an
authoritative server does); a name without records of the asked type answers
NOERROR with no data; a name not in the dict answers NXDOMAIN. Behaviours
change that per name: {"broken.test": "servfail"}, {"slow.test": ("delay",
5.0)} (the answer leaves after 5 seconds), "refused", "drop" (no answer at
all). A behaviour may be limited to one type with a key "name/TYPE"
("mx1.example.test/AAAA": "servfail").

    srv = DNSTestServer(records, behaviours).start()
    ... srv.port, srv.forwarder ("127.0.0.1@PORT"), srv.queries (a list of
    (name, type) in arrival order) ...
    srv.stop()

Records and behaviours may be changed between queries (set_records,
set_behaviour); the server is thread-safe.
"""

import threading

from dnslib import AAAA, CNAME, MX, PTR, QTYPE, RCODE, RR, SOA, TXT, A, DNSError, DNSLabel
from dnslib.server import BaseResolver, DNSLogger, DNSServer

TTL = 60


def _norm(name):
    return str(name).rstrip(".").lower()


def _rdata(rtype, value):
    if rtype == "A":
        return A(value)
    if rtype == "AAAA":
        return AAAA(value)
    if rtype == "MX":
        pref, host = value
        return MX(host if host != "." else DNSLabel([]), pref)
    if rtype == "CNAME":
        return CNAME(value)
    if rtype == "TXT":
        # a str is one character-string; a list gives several (joined by readers)
        return TXT(value)
    if rtype == "PTR":
        return PTR(value)
    raise ValueError("unsupported record type %s" % rtype)


class _Resolver(BaseResolver):
    def __init__(self, owner):
        self.owner = owner

    def resolve(self, request, handler):
        return self.owner._answer(request)


class _QuietLogger(DNSLogger):
    def __init__(self):
        super().__init__(log="-request,-reply,-truncated,-error,-data,-recv,-send", prefix=False)


class DNSTestServer:
    def __init__(self, records=None, behaviours=None):
        self._lock = threading.Lock()
        self._records = {}
        self._behaviours = {}
        self.queries = []
        self.set_records(records or {})
        for k, v in (behaviours or {}).items():
            self.set_behaviour(k, v)
        self.port = None
        self._servers = []
        self._stopping = threading.Event()  # wakes delayed answers at stop()

    # -- data ----------------------------------------------------------------
    def set_records(self, records):
        with self._lock:
            self._records = {_norm(k): list(v) for k, v in records.items()}

    def set_behaviour(self, name, behaviour):
        """behaviour: None (normal), "servfail", "refused", "drop", ("delay", s)."""
        key = name.rstrip(".").lower() if "/" not in name else (
            _norm(name.split("/")[0]) + "/" + name.split("/")[1].upper())
        with self._lock:
            if behaviour is None:
                self._behaviours.pop(key, None)
            else:
                self._behaviours[key] = behaviour

    @property
    def forwarder(self):
        return "127.0.0.1@%d" % self.port

    # -- serving ---------------------------------------------------------------
    def start(self):
        self._stopping.clear()
        resolver = _Resolver(self)
        for _ in range(20):
            udp = DNSServer(resolver, port=0, address="127.0.0.1", logger=_QuietLogger())
            port = udp.server.server_address[1]
            try:
                tcp = DNSServer(resolver, port=port, address="127.0.0.1", tcp=True,
                                logger=_QuietLogger())
            except OSError:
                udp.server.server_close()
                continue
            self.port = port
            self._servers = [udp, tcp]
            for s in self._servers:
                s.start_thread()
            return self
        raise RuntimeError("no free port for the DNS test server")

    def stop(self):
        self._stopping.set()
        for s in self._servers:
            s.stop()
            s.server.server_close()
        self._servers = []

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _soa(self, qname):
        zone = ".".join(_norm(qname).split(".")[-1:]) or "."
        return RR(zone + ".", QTYPE.SOA, ttl=TTL,
                  rdata=SOA("ns." + zone + ".", "hostmaster." + zone + ".",
                            (1, 3600, 600, 86400, TTL)))

    def _answer(self, request):
        qname = _norm(request.q.qname)
        qtype = QTYPE[request.q.qtype]
        reply = request.reply()
        reply.header.aa = 1
        with self._lock:
            self.queries.append((qname, qtype))
            behaviour = self._behaviours.get(qname + "/" + qtype, self._behaviours.get(qname))
            records = self._records
        if isinstance(behaviour, tuple) and behaviour[0] == "delay":
            if self._stopping.wait(behaviour[1]):
                raise DNSError("server stopped")  # the handler sends nothing
        elif behaviour == "servfail":
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        elif behaviour == "refused":
            reply.header.rcode = RCODE.REFUSED
            return reply
        elif behaviour == "drop":
            raise DNSError("dropped by the test's behaviour")  # the handler sends nothing
        name = qname
        for _ in range(8):  # follow CNAMEs inside our data
            rrs = records.get(name)
            if rrs is None:
                reply.header.rcode = RCODE.NXDOMAIN
                reply.add_auth(self._soa(name))
                return reply
            cname = [v for t, v in rrs if t == "CNAME"]
            if cname and qtype != "CNAME":
                reply.add_answer(RR(name + ".", QTYPE.CNAME, ttl=TTL, rdata=CNAME(cname[0])))
                name = _norm(cname[0])
                continue
            matched = [(t, v) for t, v in rrs if t == qtype]
            for t, v in matched:
                reply.add_answer(RR(name + ".", getattr(QTYPE, t), ttl=TTL, rdata=_rdata(t, v)))
            if not matched:
                reply.add_auth(self._soa(name))
            return reply
        reply.header.rcode = RCODE.SERVFAIL
        return reply
