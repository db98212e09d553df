//! The tree's reads as clients ask for them: data, existence, children and
//! their count, a session's ephemerals, and ACLs, each with the permission
//! ZooKeeper requires for it.

use super::*;

impl DataTree {
    /// Data and Stat of a node; needs READ. Null data reads as empty.
    pub fn get_data(&self, p: &str, identity: &Identity) -> Result<(&[u8], Stat), Error> {
        self.get_data_or_null(p, identity)
            .map(|(data, stat)| (data.unwrap_or_default(), stat))
    }

    /// As [`DataTree::get_data`], with null data as `None` (ZooKeeper's
    /// protocol tells null from empty).
    pub fn get_data_or_null(
        &self,
        p: &str,
        identity: &Identity,
    ) -> Result<(Option<&[u8]>, Stat), Error> {
        let node = self.lookup(p)?;
        self.config
            .acl
            .check(self.acls.get(node.acl), perms::READ, identity, p)?;
        Ok((node.data(), node.stat()))
    }

    /// Stat of a node if it exists; like ZooKeeper, needs no permission.
    pub fn exists(&self, p: &str) -> Result<Option<Stat>, Error> {
        match self.nodes.get(p) {
            Some(node) => Ok(Some(node.stat())),
            None => path::validate(p).map(|()| None),
        }
    }

    /// Children names in sorted order, and the Stat; needs READ.
    pub fn get_children(&self, p: &str, identity: &Identity) -> Result<(Vec<String>, Stat), Error> {
        let node = self.lookup(p)?;
        self.config
            .acl
            .check(self.acls.get(node.acl), perms::READ, identity, p)?;
        Ok((
            self.nodes.child_names(node).map(str::to_owned).collect(),
            node.stat(),
        ))
    }

    /// Number of nodes below `p`, at any depth; needs READ on `p`.
    pub fn get_all_children_number(&self, p: &str, identity: &Identity) -> Result<u64, Error> {
        let node = self.lookup(p)?;
        self.config
            .acl
            .check(self.acls.get(node.acl), perms::READ, identity, p)?;
        let mut count = 0u64;
        let mut stack = vec![p.to_owned()];
        while let Some(current) = stack.pop() {
            if let Some(node) = self.nodes.get(current.as_str()) {
                for child in self.nodes.child_names(node) {
                    count += 1;
                    stack.push(path::join(&current, child));
                }
            }
        }
        Ok(count)
    }

    /// How many ephemeral nodes all sessions hold.
    pub fn ephemeral_count(&self) -> usize {
        self.ephemerals.values().map(BTreeSet::len).sum()
    }

    /// The session's ephemeral nodes whose path starts with `prefix`, sorted.
    pub fn get_ephemerals(&self, session: SessionId, prefix: &str) -> Vec<String> {
        self.ephemerals
            .get(&session)
            .map(|set| {
                set.iter()
                    .filter(|p| p.starts_with(prefix))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// ACL and Stat of a node; needs READ or ADMIN, as in ZooKeeper 3.5+.
    /// Without ADMIN, digest ids show their user only (`user:x`), so that a
    /// reader cannot take the password hashes away to crack them, as
    /// ZooKeeper does since CVE-2019-0201.
    pub fn get_acl(&self, p: &str, identity: &Identity) -> Result<(Vec<Acl>, Stat), Error> {
        let node = self.lookup(p)?;
        let acl = self.acls.get(node.acl);
        self.config
            .acl
            .check(acl, perms::READ | perms::ADMIN, identity, p)?;
        let mut shown = acl.to_vec();
        if !self.config.acl.permits(acl, perms::ADMIN, identity) {
            for entry in shown.iter_mut().filter(|e| e.id.scheme == "digest") {
                let user = entry.id.id.split(':').next().unwrap_or_default();
                entry.id.id = format!("{user}:x");
            }
        }
        Ok((shown, node.stat()))
    }
}
