//! Sequential names: under one parent, the names sequential creates get
//! are unique and increase in the order the creates commit (checked as
//! each is first applied), and in real time: a create acknowledged before
//! another was asked got the smaller name (checked on the acknowledged
//! creates when the run ends).

use std::collections::BTreeMap;

/// The sequence number of a sequential name (its last ten digits).
fn sequence(path: &str) -> Option<(&str, u64)> {
    let split = path.len().checked_sub(10)?;
    let (prefix, digits) = path.split_at(split);
    Some((prefix, digits.parse().ok()?))
}

/// What the check has seen.
#[derive(Debug, Default)]
pub(in crate::sim) struct Sequences {
    /// The last sequence number committed under each prefix.
    last: BTreeMap<String, u64>,
    /// Acknowledged creates: (asked, answered, name).
    acknowledged: Vec<(u64, u64, String)>,
}

impl Sequences {
    /// The sequential create that made `path` was first applied.
    pub(in crate::sim) fn on_commit(&mut self, path: &str) -> Option<String> {
        let Some((prefix, n)) = sequence(path) else {
            return Some(format!(
                "sequential create made {path}, not a sequential name"
            ));
        };
        let last = self.last.insert(prefix.to_owned(), n);
        last.filter(|l| *l >= n).map(|l| {
            format!("sequential create committed {path} after sequence number {l} under {prefix}")
        })
    }

    /// A client asked at `asked` and was told at `answered` that it
    /// created `path`.
    pub(in crate::sim) fn acknowledged(&mut self, path: String, asked: u64, answered: u64) {
        self.acknowledged.push((asked, answered, path));
    }

    /// At the end: names unique, and increasing in real time.
    pub(in crate::sim) fn at_end(&self) -> Option<String> {
        let mut by_name: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, _, name) in &self.acknowledged {
            *by_name.entry(name).or_default() += 1;
        }
        if let Some((name, _)) = by_name.iter().find(|(_, n)| **n > 1) {
            return Some(format!("sequential name {name} was given to two creates"));
        }
        for (a_asked, a_answered, a) in &self.acknowledged {
            for (b_asked, _, b) in &self.acknowledged {
                let (Some((pa, na)), Some((pb, nb))) = (sequence(a), sequence(b)) else {
                    continue;
                };
                if pa == pb && a_answered < b_asked && na >= nb {
                    return Some(format!(
                        "{a} (asked {a_asked}, acknowledged {a_answered}) is not below {b}, \
                         asked later at {b_asked}"
                    ));
                }
            }
        }
        None
    }
}
