//! Znode path rules: what a valid path is (ZooKeeper's rules, so that every
//! path a ZooKeeper client sends means the same here), and the cheap string
//! arithmetic on paths that the tree needs.

use crate::error::Error;

/// The subtree ZooKeeper reserves for the server's own nodes.
pub const RESERVED_ROOT: &str = "/zookeeper";

/// Checks `path` the way ZooKeeper's `PathUtils.validatePath` does and names
/// the problem when it is invalid.
pub fn validate(path: &str) -> Result<(), Error> {
    let invalid = |reason: &'static str| Error::InvalidPath {
        path: path.to_owned(),
        reason,
    };
    if path.is_empty() {
        return Err(invalid("path must not be empty"));
    }
    if !path.starts_with('/') {
        return Err(invalid("path must start with /"));
    }
    if path.len() == 1 {
        return Ok(());
    }
    if path.ends_with('/') {
        return Err(invalid("path must not end with /"));
    }
    for segment in path[1..].split('/') {
        match segment {
            "" => return Err(invalid("empty segment (//) in path")),
            "." | ".." => return Err(invalid("relative segments . and .. are not allowed")),
            _ => {}
        }
    }
    if path.chars().any(is_forbidden_char) {
        return Err(invalid("control or reserved unicode character in path"));
    }
    Ok(())
}

/// Like [`validate`] for the path a sequential create names: ZooKeeper lets
/// it end in `/` since a sequence number is appended.
pub fn validate_sequential_prefix(path: &str) -> Result<(), Error> {
    if path.ends_with('/') && path.len() > 1 {
        let mut candidate = String::with_capacity(path.len() + 1);
        candidate.push_str(path);
        candidate.push('1');
        return validate(&candidate).map_err(|e| match e {
            Error::InvalidPath { reason, .. } => Error::InvalidPath {
                path: path.to_owned(),
                reason,
            },
            other => other,
        });
    }
    validate(path)
}

// Rust strings cannot hold surrogates, so of ZooKeeper's D800-F8FF range only the
// private-use part E000-F8FF is left to refuse.
fn is_forbidden_char(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{e000}'..='\u{f8ff}'
        | '\u{fff0}'..='\u{ffff}')
}

/// The parent of a valid, non-root path.
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// The last segment of a valid, non-root path.
pub fn name(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// Joins a parent path and a child name.
pub fn join(parent: &str, child: &str) -> String {
    let mut out = String::with_capacity(parent.len() + 1 + child.len());
    out.push_str(parent);
    if parent != "/" {
        out.push('/');
    }
    out.push_str(child);
    out
}

/// Whether `path` lies in the reserved `/zookeeper` subtree.
pub fn is_reserved(path: &str) -> bool {
    path == RESERVED_ROOT
        || (path.starts_with(RESERVED_ROOT)
            && path.as_bytes().get(RESERVED_ROOT.len()) == Some(&b'/'))
}

/// Whether clients may not write `path`: the reserved subtree, except
/// below `/zookeeper/quota`, where ZooKeeper clients keep quotas
/// (zkCli's `setquota` creates `/zookeeper/quota/<path>/zookeeper_limits`).
pub fn is_write_protected(path: &str) -> bool {
    is_reserved(path) && !(is_at_or_below(path, QUOTA_ROOT) && path != QUOTA_ROOT)
}

/// Where quotas live.
const QUOTA_ROOT: &str = "/zookeeper/quota";

/// Whether `path` is `base` or lies below it.
pub fn is_at_or_below(path: &str, base: &str) -> bool {
    if base == "/" {
        return true;
    }
    path == base || (path.starts_with(base) && path.as_bytes().get(base.len()) == Some(&b'/'))
}

/// `path` and each of its ancestors, the path first and `/` last.
pub fn self_and_ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(path);
    std::iter::from_fn(move || {
        let current = next?;
        next = if current == "/" {
            None
        } else {
            Some(parent(current))
        };
        Some(current)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_zookeeper_valid_paths() {
        for p in [
            "/",
            "/a",
            "/a/b",
            "/a-b_c.d",
            "/zookeeper",
            "/ü/日本",
            "/a..b",
            "/.a",
        ] {
            assert!(validate(p).is_ok(), "{p}");
        }
    }

    #[test]
    fn rejects_invalid_paths_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("a", "start with /"),
            ("/a/", "end with /"),
            ("/a//b", "empty segment"),
            ("/a/./b", "relative"),
            ("/a/..", "relative"),
            ("/a\u{0}b", "control"),
            ("/a\u{1f}", "control"),
            ("/a\u{fff5}", "control"),
        ];
        for (p, why) in cases {
            match validate(p) {
                Err(Error::InvalidPath { reason, .. }) => {
                    assert!(reason.contains(why), "{p}: {reason}")
                }
                other => panic!("{p:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn sequential_prefix_may_end_in_slash() {
        assert!(validate_sequential_prefix("/a/").is_ok());
        assert!(validate_sequential_prefix("/a//").is_err());
        assert!(validate_sequential_prefix("/a/lock-").is_ok());
    }

    #[test]
    fn path_arithmetic() {
        assert_eq!(parent("/a"), "/");
        assert_eq!(parent("/a/b/c"), "/a/b");
        assert_eq!(name("/a/b"), "b");
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
        assert!(is_reserved("/zookeeper/quota"));
        assert!(!is_reserved("/zookeeperx"));
        assert!(is_write_protected("/zookeeper/quota"));
        assert!(is_write_protected("/zookeeper/config"));
        assert!(is_write_protected("/zookeeper/x"));
        assert!(!is_write_protected("/zookeeper/quota/app/zookeeper_limits"));
        assert!(!is_write_protected("/app"));
        assert!(is_at_or_below("/a/b", "/a"));
        assert!(!is_at_or_below("/ab", "/a"));
        assert_eq!(
            self_and_ancestors("/a/b").collect::<Vec<_>>(),
            ["/a/b", "/a", "/"]
        );
    }
}
