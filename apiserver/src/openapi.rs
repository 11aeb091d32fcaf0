//! `/openapi/v2` in the protobuf form kubectl downloads
//! (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`, the
//! gnostic `openapi_v2.Document`). It lists every resource path with its
//! PATCH operation tagged by `x-kubernetes-group-version-kind` and the
//! `fieldValidation` query parameter, which tells kubectl that the server
//! validates fields, so kubectl does not validate client-side against
//! schemas. It carries no definitions: kubectl then computes strategic
//! merge patches from its compiled-in types.

use ackemu_kube::{Registry, ResourceInfo};

fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn bytes_field(num: u32, data: &[u8], out: &mut Vec<u8>) {
    varint(u64::from(num << 3 | 2), out);
    varint(data.len() as u64, out);
    out.extend_from_slice(data);
}

fn bool_field(num: u32, v: bool, out: &mut Vec<u8>) {
    varint(u64::from(num << 3), out);
    varint(u64::from(v), out);
}

fn msg(num: u32, build: impl FnOnce(&mut Vec<u8>), out: &mut Vec<u8>) {
    let mut inner = Vec::new();
    build(&mut inner);
    bytes_field(num, &inner, out);
}

/// A PATCH operation with the GVK extension and the fieldValidation parameter.
fn patch_operation(r: &ResourceInfo, out: &mut Vec<u8>) {
    // Operation.parameters (8): ParametersItem.parameter (1) → Parameter.non_body_parameter (2)
    // → NonBodyParameter.query_parameter_sub_schema (3).
    for name in ["fieldValidation", "dryRun", "fieldManager"] {
        msg(
            8,
            |pi| {
                msg(
                    1,
                    |p| {
                        msg(
                            2,
                            |nb| {
                                msg(
                                    3,
                                    |q| {
                                        bytes_field(2, b"query", q);
                                        bytes_field(4, name.as_bytes(), q);
                                        bytes_field(6, b"string", q);
                                        bool_field(20, true, q);
                                    },
                                    nb,
                                )
                            },
                            p,
                        )
                    },
                    pi,
                )
            },
            out,
        );
    }
    // Operation.vendor_extension (13): NamedAny{name, value: Any{yaml (2)}}.
    let yaml = format!(
        "group: \"{}\"\nkind: {}\nversion: {}\n",
        r.group, r.kind, r.version
    );
    msg(
        13,
        |na| {
            bytes_field(1, b"x-kubernetes-group-version-kind", na);
            msg(2, |any| bytes_field(2, yaml.as_bytes(), any), na);
        },
        out,
    );
}

fn base(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    }
}

/// The protobuf OpenAPI v2 document.
pub fn v2_protobuf(registry: &Registry, version: &str) -> Vec<u8> {
    let mut doc = Vec::new();
    bytes_field(1, b"2.0", &mut doc);
    msg(
        2,
        |info| {
            bytes_field(1, b"Kubernetes", info);
            bytes_field(2, version.as_bytes(), info);
        },
        &mut doc,
    );
    msg(
        8,
        |paths| {
            for r in registry.iter().filter(|r| r.storage_prefix.is_some()) {
                let b = base(&r.group, &r.version);
                let item = if r.namespaced() {
                    format!("{b}/namespaces/{{namespace}}/{}/{{name}}", r.resource)
                } else {
                    format!("{b}/{}/{{name}}", r.resource)
                };
                msg(
                    2,
                    |npi| {
                        bytes_field(1, item.as_bytes(), npi);
                        msg(2, |pi| msg(8, |op| patch_operation(r, op), pi), npi);
                    },
                    paths,
                );
            }
        },
        &mut doc,
    );
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks length-delimited fields by path of field numbers, returning
    /// every payload found (the same navigation kubectl does).
    fn find(b: &[u8], path: &[u32]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < b.len() {
            let mut tag = 0u64;
            let mut shift = 0;
            loop {
                let byte = b[pos];
                pos += 1;
                tag |= u64::from(byte & 0x7f) << shift;
                shift += 7;
                if byte & 0x80 == 0 {
                    break;
                }
            }
            let (num, wt) = ((tag >> 3) as u32, tag & 7);
            let payload = match wt {
                0 => {
                    while b[pos] & 0x80 != 0 {
                        pos += 1;
                    }
                    pos += 1;
                    continue;
                }
                2 => {
                    let mut len = 0usize;
                    let mut shift = 0;
                    loop {
                        let byte = b[pos];
                        pos += 1;
                        len |= usize::from(byte & 0x7f) << shift;
                        shift += 7;
                        if byte & 0x80 == 0 {
                            break;
                        }
                    }
                    let p = b[pos..pos + len].to_vec();
                    pos += len;
                    p
                }
                _ => panic!("unexpected wire type"),
            };
            if num == path[0] {
                if path.len() == 1 {
                    out.push(payload);
                } else {
                    out.extend(find(&payload, &path[1..]));
                }
            }
        }
        out
    }

    #[test]
    fn document_has_patch_paths_with_gvk_and_field_validation() {
        let doc = v2_protobuf(&Registry::builtin(), "v1.27.0");
        assert_eq!(find(&doc, &[1]), vec![b"2.0".to_vec()]);
        let names: Vec<String> = find(&doc, &[8, 2, 1])
            .into_iter()
            .map(|n| String::from_utf8(n).unwrap())
            .collect();
        assert!(
            names.contains(&"/apis/apps/v1/namespaces/{namespace}/deployments/{name}".to_owned()),
            "{names:?}"
        );
        assert!(names.contains(&"/api/v1/nodes/{name}".to_owned()));
        let yamls: Vec<String> = find(&doc, &[8, 2, 2, 8, 13, 2, 2])
            .into_iter()
            .map(|n| String::from_utf8(n).unwrap())
            .collect();
        assert!(yamls.contains(&"group: \"apps\"\nkind: Deployment\nversion: v1\n".to_owned()));
        let params: Vec<String> = find(&doc, &[8, 2, 2, 8, 8, 1, 2, 3, 4])
            .into_iter()
            .map(|n| String::from_utf8(n).unwrap())
            .collect();
        assert!(params.iter().filter(|p| *p == "fieldValidation").count() > 20);
    }
}
