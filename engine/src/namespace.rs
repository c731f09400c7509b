//! Namespaces (wire reference §2.5): the replicated table behind `/v1/console/namespaces`.
//! Pure and deterministic like the other CP tables. The default namespace (`""`, shown as
//! `public`) is implicit and never stored; naming and config do not require a namespace to
//! exist, as in Nacos.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Fnv64;

/// Longest custom namespace id (Nacos's console limit).
pub const NAMESPACE_ID_CHARS_MAX: usize = 128;
/// Longest namespace show name.
pub const NAMESPACE_NAME_CHARS_MAX: usize = 256;
/// Characters a show name must not contain.
pub const NAMESPACE_NAME_FORBIDDEN: &str = "@#$%^&*";

/// One custom namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    pub name: String,
    pub desc: String,
    /// When it was created (leader wall clock), for the listing order.
    pub created_ms: u64,
}

/// A change of the namespace table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NamespaceCommand {
    Create {
        id: String,
        name: String,
        desc: String,
    },
    Update {
        id: String,
        name: String,
        desc: String,
    },
    Delete {
        id: String,
    },
}

/// What applying a namespace command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NamespaceApplied {
    Done,
    Refused(String),
}

/// Checks a custom namespace id: `^[\w-]+$`, at most `NAMESPACE_ID_CHARS_MAX` characters.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.chars().count() > NAMESPACE_ID_CHARS_MAX {
        return Err(format!(
            "namespaceId [{id}] length must be 1..{NAMESPACE_ID_CHARS_MAX}"
        ));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!("namespaceId [{id}] mismatch the pattern"));
    }
    Ok(())
}

/// Checks a show name: non-blank, bounded, none of `@#$%^&*`.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() || name.chars().count() > NAMESPACE_NAME_CHARS_MAX {
        return Err(format!(
            "namespaceName [{name}] length must be 1..{NAMESPACE_NAME_CHARS_MAX}"
        ));
    }
    if name.chars().any(|c| NAMESPACE_NAME_FORBIDDEN.contains(c)) {
        return Err(format!(
            "namespaceName [{name}] contains illegal Characters"
        ));
    }
    Ok(())
}

/// Custom namespaces by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceTable {
    pub namespaces: BTreeMap<String, Namespace>,
}

impl NamespaceTable {
    /// True when no custom namespace exists.
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
    }

    /// Applies one command at the leader's time `now_ms`.
    pub fn apply(&mut self, now_ms: u64, cmd: &NamespaceCommand) -> NamespaceApplied {
        use NamespaceApplied::{Done, Refused};
        match cmd {
            NamespaceCommand::Create { id, name, desc } => {
                if let Err(e) = check_id(id).and_then(|()| check_name(name)) {
                    return Refused(e);
                }
                if id == "public" || self.namespaces.contains_key(id) {
                    return Refused(format!("namespaceId [{id}] already exist"));
                }
                self.namespaces.insert(
                    id.clone(),
                    Namespace {
                        name: name.clone(),
                        desc: desc.clone(),
                        created_ms: now_ms,
                    },
                );
                Done
            }
            NamespaceCommand::Update { id, name, desc } => {
                if let Err(e) = check_name(name) {
                    return Refused(e);
                }
                match self.namespaces.get_mut(id) {
                    Some(ns) => {
                        ns.name = name.clone();
                        ns.desc = desc.clone();
                        Done
                    }
                    None => Refused(format!("namespaceId [ {id} ] not exist")),
                }
            }
            NamespaceCommand::Delete { id } => {
                self.namespaces.remove(id);
                Done
            }
        }
    }

    /// Custom namespaces in creation order.
    pub fn listed(&self) -> Vec<(&String, &Namespace)> {
        let mut all: Vec<(&String, &Namespace)> = self.namespaces.iter().collect();
        all.sort_by_key(|(id, ns)| (ns.created_ms, id.to_string()));
        all
    }

    /// A digest of the table, equal on converged replicas.
    pub fn digest(&self) -> u64 {
        let mut h = Fnv64::default();
        h.write(&postcard::to_allocvec(self).unwrap_or_default());
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(id: &str, name: &str) -> NamespaceCommand {
        NamespaceCommand::Create {
            id: id.into(),
            name: name.into(),
            desc: String::new(),
        }
    }

    #[test]
    fn namespaces_are_created_once_checked_updated_and_deleted() {
        let mut t = NamespaceTable::default();
        assert_eq!(t.apply(2, &create("dev", "Dev")), NamespaceApplied::Done);
        assert_eq!(t.apply(1, &create("alpha", "A")), NamespaceApplied::Done);
        assert_eq!(
            t.apply(3, &create("dev", "again")),
            NamespaceApplied::Refused("namespaceId [dev] already exist".into())
        );
        assert!(matches!(
            t.apply(3, &create("public", "P")),
            NamespaceApplied::Refused(_)
        ));
        assert!(matches!(
            t.apply(3, &create("bad id", "x")),
            NamespaceApplied::Refused(_)
        ));
        assert!(matches!(
            t.apply(3, &create("ok", "bad#name")),
            NamespaceApplied::Refused(_)
        ));
        let order: Vec<&str> = t.listed().iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(order, ["alpha", "dev"], "creation order");
        let update = NamespaceCommand::Update {
            id: "dev".into(),
            name: "Development".into(),
            desc: "d".into(),
        };
        assert_eq!(t.apply(4, &update), NamespaceApplied::Done);
        assert_eq!(t.namespaces["dev"].name, "Development");
        let missing = NamespaceCommand::Update {
            id: "nope".into(),
            name: "x".into(),
            desc: String::new(),
        };
        assert!(matches!(t.apply(4, &missing), NamespaceApplied::Refused(_)));
        t.apply(5, &NamespaceCommand::Delete { id: "dev".into() });
        assert_eq!(t.namespaces.len(), 1);
    }
}
