"""Verify plantline.edge.mosquitto_edge: mTLS listener, ACL enforced, CRL, validation, reload not restart."""

from __future__ import annotations

from collections.abc import Callable

from testinfra.host import Host

HostFactory = Callable[[str], Host]

TLS = "/etc/plantline/tls"
CHECKER = "/usr/local/libexec/plantline/mosquitto-check-config"


def _client(identity: str) -> str:
    return f"-h 127.0.0.1 -p 8883 --cafile {TLS}/ca.crt --cert {TLS}/{identity}.crt --key {TLS}/{identity}.key"


def _delivered(node: Host, publisher: str, topic: str) -> bool:
    """Publish as `publisher` on `topic`; return whether the reader identity received it."""
    sub = node.run(
        f"timeout 8 mosquitto_sub {_client('molecule-line1-reader')} -i reader-{publisher} -t '{topic}' -C 1 -W 6 "
        f"& sleep 1.5; mosquitto_pub {_client(publisher)} -i pub-{publisher} -t '{topic}' -m hello -q 1; wait $!"
    )
    return "hello" in sub.stdout


def test_broker_runs_with_the_rendered_configuration(hosts: HostFactory) -> None:
    node = hosts("node")
    assert node.service("mosquitto").is_enabled
    assert node.service("mosquitto").is_running
    assert node.socket("tcp://0.0.0.0:8883").is_listening
    conf = node.file("/etc/mosquitto/mosquitto.conf")
    assert (conf.mode, conf.user, conf.group) == (0o640, "root", "mosquitto")
    assert "require_certificate true" in conf.content_string
    assert "crlfile /etc/plantline/tls/crl.pem" in conf.content_string
    assert "connection molecule-line1-bridge" in conf.content_string
    assert node.file("/var/lib/plantline/broker/data").user == "mosquitto"


def test_acl_lets_a_connector_publish_only_its_own_topics(hosts: HostFactory) -> None:
    node = hosts("node")
    assert _delivered(node, "molecule-line1-line1", "spBv1.0/molecule/DDATA/line1/capper")
    assert not _delivered(node, "molecule-line1-line1", "spBv1.0/molecule/DDATA/other-node/capper")


def test_clients_without_a_certificate_are_refused(hosts: HostFactory) -> None:
    node = hosts("node")
    result = node.run(f"mosquitto_pub -h 127.0.0.1 -p 8883 --cafile {TLS}/ca.crt -t t -m x -i anon")
    assert result.rc != 0


def test_checker_refuses_broken_candidates(hosts: HostFactory) -> None:
    node = hosts("node")
    assert node.run(f"{CHECKER} /etc/mosquitto/mosquitto.conf").rc == 0
    node.check_output("sed 's/^keyfile .*/keyfile \\/nonexistent.key/' /etc/mosquitto/mosquitto.conf > /tmp/bad.conf")
    bad = node.run(f"{CHECKER} /tmp/bad.conf")
    assert bad.rc == 1
    assert "nonexistent.key" in bad.stderr
    node.check_output("printf 'user x\\ntopic sideways a/b\\n' > /tmp/bad.acl")
    assert node.run(f"{CHECKER} --acl /tmp/bad.acl").rc == 1


def test_acl_change_reloads_without_restart(hosts: HostFactory) -> None:
    node = hosts("node")
    pid = node.check_output("systemctl show -p MainPID --value mosquitto")
    node.check_output(
        "cp /var/lib/plantline/broker/acl /tmp/acl.saved && echo '# touched' >> /var/lib/plantline/broker/acl"
    )
    node.check_output("systemctl reload mosquitto")
    assert node.check_output("systemctl show -p MainPID --value mosquitto") == pid
    node.check_output("cp /tmp/acl.saved /var/lib/plantline/broker/acl && systemctl reload mosquitto")
    assert _delivered(node, "molecule-line1-line1", "spBv1.0/molecule/NBIRTH/line1")
