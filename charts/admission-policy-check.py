"""The chart's ValidatingAdmissionPolicy, evaluated with a real CEL
implementation (cel-python) against the admission requests it must refuse and
those it must let through: `kubectl scale statefulset` on a StatefulSet the
operator owns (the scale subresource and a full update), the same by the
operator itself, an unrelated StatefulSet, an edit that keeps the replicas.

Usage: admission-policy-check.py RENDERED.yaml
"""
import sys

import celpy
import yaml

OPERATOR = "system:serviceaccount:chat-system:rc-replicated-chat"
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
policy = next(d for d in docs if d["kind"] == "ValidatingAdmissionPolicy")["spec"]
env = celpy.Environment()


def run(expression, activation):
    return env.program(env.compile(expression)).evaluate(activation)


def admit(user, sub, old, new):
    """None when admitted, else the message."""
    act = {
        "request": celpy.json_to_cel({"userInfo": {"username": user}, "subResource": sub}),
        "oldObject": celpy.json_to_cel(old),
        "object": celpy.json_to_cel(new),
    }
    if not all(run(c["expression"], act) for c in policy["matchConditions"]):
        return None
    variables = celpy.celtypes.MapType({})
    for v in policy["variables"]:
        act["variables"] = variables
        variables[celpy.celtypes.StringType(v["name"])] = run(v["expression"], act)
    act["variables"] = variables
    for rule in policy["validations"]:
        if not run(rule["expression"], act):
            return str(run(rule["messageExpression"], act))
    return None


def scale(name, replicas, selector):
    return {"metadata": {"name": name}, "spec": {"replicas": replicas}, "status": {"selector": selector}}


def sts(name, replicas, owner="ReplicatedChat", annotation="a"):
    refs = [{"kind": owner, "apiVersion": "chat.replicated.dev/v1alpha1", "name": name}]
    return {"metadata": {"name": name, "ownerReferences": refs, "annotations": {"x": annotation}},
            "spec": {"replicas": replicas}}


ours = "app.kubernetes.io/instance=demo,app.kubernetes.io/name=replicated-chat"
refused = admit("alice", "scale", scale("demo", 3, ours), scale("demo", 5, ours))
assert refused and "kubectl scale rchat demo --replicas=5" in refused, refused
refused = admit("alice", "scale", scale("demo-replica", 2, ours), scale("demo-replica", 0, ours))
assert refused and "spec.readReplicas" in refused, refused
refused = admit("alice", "", sts("demo", 3), sts("demo", 4))
assert refused and "--replicas=4" in refused, refused
assert admit(OPERATOR, "scale", scale("demo", 3, ours), scale("demo", 5, ours)) is None, "the operator was refused"
assert admit(OPERATOR, "", sts("demo", 3), sts("demo", 5)) is None, "the operator was refused"
assert admit("alice", "scale", scale("web", 3, "app=web"), scale("web", 5, "app=web")) is None, "not ours"
assert admit("alice", "", sts("web", 3, owner="Deployment"), sts("web", 5, owner="Deployment")) is None, "not ours"
assert admit("alice", "", sts("demo", 3), sts("demo", 3, annotation="b")) is None, "an edit keeping replicas"
print("admission policy: refuses direct scaling of owned StatefulSets, lets the rest through")
