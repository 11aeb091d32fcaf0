"""Regenerates schema.rs: the field tables of the Kubernetes protobuf wire format.

Usage: put the generated.proto files of k8s.io/api (core, apps, rbac,
certificates, authorization, authentication, policy, coordination, discovery;
all v1) under /tmp/protos/api/<group>/v1/ and those of k8s.io/apimachinery
(pkg/apis/meta/v1, pkg/runtime, pkg/util/intstr, pkg/api/resource) under
/tmp/protos/am/<path>/, then run `python3 gen_schema.py > schema.rs`.
The tables cover the messages reachable from the kinds kubectl's typed
clients send (see `roots`).
"""
import re, glob, sys
files = glob.glob('/tmp/protos/**/generated.proto', recursive=True)
msgs = {}  # full name -> list of (num, name, kind, repeated)
for f in files:
    text = open(f).read()
    pkg = re.search(r'^package ([\w.]+);', text, re.M).group(1)
    # strip comments
    text = re.sub(r'//[^\n]*', '', text)
    for m in re.finditer(r'^message (\w+) \{(.*?)^\}', text, re.M | re.S):
        name, body = m.group(1), m.group(2)
        if re.search(r'^\s*message ', body, re.M):
            print('nested in', name, file=sys.stderr)
        fields = []
        for fm in re.finditer(r'^\s*(optional|repeated)?\s*(map<\s*([\w.]+)\s*,\s*([\w.]+)\s*>|[\w.]+)\s+(\w+)\s*=\s*(\d+)\s*;', body, re.M):
            label, typ, mk, mv, fname, num = fm.groups()
            fields.append((int(num), fname, label == 'repeated', typ if not mk else None, (mk, mv) if mk else None))
        msgs[pkg + '.' + name] = (pkg, fields)

scalars = {'string': 'Str', 'int32': 'Int', 'int64': 'Int', 'bool': 'Bool', 'bytes': 'Bytes', 'double': 'Double', 'float': 'Float', 'uint32': 'Int', 'uint64': 'Int', 'sint32':'SInt', 'sint64':'SInt', 'fixed32':'Fixed32', 'fixed64':'Fixed64'}
def resolve(pkg, t):
    if t in scalars: return None
    if t.startswith('.'): return t[1:]
    return pkg + '.' + t

roots = ['k8s.io.api.core.v1.' + x for x in ['ConfigMap','Secret','Namespace','ServiceAccount','Service','Pod','Binding','Endpoints','Event','Node','PodTemplateSpec']] + \
    ['k8s.io.api.apps.v1.' + x for x in ['Deployment','ReplicaSet','DaemonSet']] + \
    ['k8s.io.api.rbac.v1.' + x for x in ['Role','ClusterRole','RoleBinding','ClusterRoleBinding']] + \
    ['k8s.io.api.certificates.v1.CertificateSigningRequest'] + \
    ['k8s.io.api.authorization.v1.' + x for x in ['SelfSubjectAccessReview','SubjectAccessReview','LocalSubjectAccessReview','SelfSubjectRulesReview']] + \
    ['k8s.io.api.authentication.v1.' + x for x in ['TokenRequest','SelfSubjectReview','TokenReview']] + \
    ['k8s.io.api.policy.v1.Eviction', 'k8s.io.api.coordination.v1.Lease', 'k8s.io.api.discovery.v1.EndpointSlice',
     'k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions', 'k8s.io.apimachinery.pkg.runtime.Unknown']
special = {'k8s.io.apimachinery.pkg.apis.meta.v1.Time': 'Time', 'k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime': 'MicroTime',
  'k8s.io.apimachinery.pkg.api.resource.Quantity': 'Quantity', 'k8s.io.apimachinery.pkg.util.intstr.IntOrString': 'IntOrString',
  'k8s.io.apimachinery.pkg.runtime.RawExtension': 'Raw', 'k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1': 'Raw',
  'k8s.io.apimachinery.pkg.apis.meta.v1.Duration': 'Duration'}
seen = []
stack = list(roots)
while stack:
    n = stack.pop()
    if n in seen or n in special: continue
    if n not in msgs:
        print('missing', n, file=sys.stderr); continue
    seen.append(n)
    pkg, fields = msgs[n]
    for (num, fname, rep, typ, mp) in fields:
        for t in ([typ] if typ else [mp[1]]):
            r = resolve(pkg, t)
            if r: stack.append(r)
def kind(pkg, t):
    if t in scalars: return 'K::' + scalars[t]
    r = resolve(pkg, t)
    if r in special: return 'K::' + special[r]
    return 'K::Msg(%d)' % seen.index(r)
seen.sort()
out = []
out.append('// Field tables of the Kubernetes protobuf wire format (k8s.io/api and')
out.append('// k8s.io/apimachinery generated.proto): message name, then (number, JSON')
out.append('// name, kind, repeated). Generated from the published schema; edit by')
out.append('// regenerating, not by hand.')
out.append('use super::{Field as F, Kind as K, Message};')
out.append('')
out.append('pub static MESSAGES: &[Message] = &[')
for n in seen:
    pkg, fields = msgs[n]
    fs = []
    for (num, fname, rep, typ, mp) in sorted(fields):
        if mp:
            k = 'K::Map(%s, %s)' % ('&' + kind(pkg, mp[0]), '&' + kind(pkg, mp[1]))
        else:
            k = kind(pkg, typ)
        fs.append('F(%d, "%s", %s, %s)' % (num, fname, k, 'true' if rep else 'false'))
    out.append('    Message { name: "%s", fields: &[%s] },' % (n, ', '.join(fs)))
out.append('];')
print('\n'.join(out))
print(len(seen), file=sys.stderr)
