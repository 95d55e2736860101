//! The meta group's state — catalog documents, placement (event → group), the group table
//! (group → replicas), the node table (node → address, state) — and the replicated [`Limits`] every group enforces.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::records::Key;
use super::{check_id, Checked, Machine};
use crate::types::*;

impl Machine {
    pub(super) fn check_limits(&self, limits: &Limits) -> Checked<()> {
        if limits.max_seats_per_hold == 0
            || limits.max_seats_per_hold > MAX_SEATS_PER_HOLD
            || limits.max_holds_per_user_per_event == 0
            || limits.min_hold_ttl_ms == 0
            || limits.min_hold_ttl_ms > limits.max_hold_ttl_ms
        {
            return Err(Rejection::Invalid(
                format!("limits must be positive, seats per hold at most {MAX_SEATS_PER_HOLD}, and min ttl <= max ttl"),
            )
            .into());
        }
        Ok(())
    }

    pub(super) fn set_limits(&mut self, limits: &Limits) -> Outcome {
        self.globals.limits = limits.clone();
        self.dirty.insert(Key::Globals);
        Outcome::Done
    }

    fn check_catalog_key(kind: &str, id: &str) -> Result<(), Rejection> {
        check_id("catalog kind", kind)?;
        check_id("catalog id", id)?;
        if kind.contains('\0') {
            return Err(Rejection::Invalid(
                "catalog kind must not contain NUL".into(),
            ));
        }
        Ok(())
    }

    pub(super) fn check_put_catalog(&self, cmd: &PutCatalogCmd) -> Checked<()> {
        Machine::check_catalog_key(&cmd.kind, &cmd.id)?;
        if cmd.doc.len() > MAX_CATALOG_DOC_BYTES {
            return Err(Rejection::Invalid(format!(
                "catalog documents are at most {MAX_CATALOG_DOC_BYTES} bytes"
            ))
            .into());
        }
        Ok(())
    }

    pub(super) fn put_catalog(
        &mut self,
        cmd: &PutCatalogCmd,
        changes: &mut Vec<Change>,
    ) -> Outcome {
        self.catalog.insert(
            (cmd.kind.clone(), cmd.id.clone()),
            Arc::new(cmd.doc.clone()),
        );
        self.catalog_changed(&cmd.kind, &cmd.id, false, changes);
        Outcome::Done
    }

    /// Deleting a document that is not there is done already and changes nothing.
    pub(super) fn check_delete_catalog(&self, cmd: &DeleteCatalogCmd) -> Checked<()> {
        Machine::check_catalog_key(&cmd.kind, &cmd.id)?;
        match self
            .catalog
            .contains_key(&(cmd.kind.clone(), cmd.id.clone()))
        {
            true => Ok(()),
            false => Err(Box::new(Outcome::Done)),
        }
    }

    pub(super) fn delete_catalog(
        &mut self,
        cmd: &DeleteCatalogCmd,
        changes: &mut Vec<Change>,
    ) -> Outcome {
        self.catalog.remove(&(cmd.kind.clone(), cmd.id.clone()));
        self.catalog_changed(&cmd.kind, &cmd.id, true, changes);
        Outcome::Done
    }

    fn catalog_changed(&mut self, kind: &str, id: &str, deleted: bool, changes: &mut Vec<Change>) {
        self.dirty
            .insert(Key::Catalog(kind.to_owned(), id.to_owned()));
        changes.push(Change::Catalog {
            kind: kind.to_owned(),
            id: id.to_owned(),
            deleted,
        });
    }

    /// The first assignment of an event wins; a later one answers it and changes nothing.
    pub(super) fn check_assign_event(&self, cmd: &AssignEventCmd) -> Checked<()> {
        check_id("event id", &cmd.event_id)?;
        if cmd.group == META_GROUP {
            return Err(Rejection::Invalid("events live in inventory groups (1..)".into()).into());
        }
        match self.placement.get(&cmd.event_id) {
            Some(&group) => Err(Box::new(Outcome::Assigned { group })),
            None => Ok(()),
        }
    }

    pub(super) fn assign_event(
        &mut self,
        cmd: &AssignEventCmd,
        changes: &mut Vec<Change>,
    ) -> Outcome {
        self.placement.insert(cmd.event_id.clone(), cmd.group);
        self.dirty.insert(Key::Placement(cmd.event_id.clone()));
        changes.push(Change::Placement {
            event_id: cmd.event_id.clone(),
            group: cmd.group,
        });
        Outcome::Assigned { group: cmd.group }
    }

    /// The members sorted by node id, one address each.
    pub(super) fn check_put_group(&self, cmd: &PutGroupCmd) -> Checked<Vec<(NodeId, String)>> {
        let members = &cmd.members;
        if members.is_empty()
            || members
                .iter()
                .any(|(_, addr)| addr.is_empty() || addr.len() > MAX_ID_BYTES)
        {
            return Err(Rejection::Invalid("a group needs members with addresses".into()).into());
        }
        let mut members = members.to_vec();
        members.sort();
        members.dedup_by_key(|(id, _)| *id);
        Ok(members)
    }

    pub(super) fn put_group(
        &mut self,
        group: GroupId,
        members: Vec<(NodeId, String)>,
        changes: &mut Vec<Change>,
    ) -> Outcome {
        self.groups.insert(group, members);
        self.dirty.insert(Key::Group(group));
        changes.push(Change::Group { group });
        Outcome::Done
    }

    /// A node needs an address; a removed node is never recorded again (its id is spent).
    pub(super) fn check_put_node(&self, cmd: &PutNodeCmd) -> Checked<()> {
        let node = &cmd.node;
        if node.addr.is_empty() || node.addr.len() > MAX_ID_BYTES {
            return Err(Rejection::Invalid("a node needs an address".into()).into());
        }
        match self.nodes.get(&node.node_id) {
            Some(known) if *known == *node => Err(Box::new(Outcome::Done)),
            Some(known) if known.state == NodeState::Removed => Err(Rejection::Invalid(format!(
                "node {} was removed; a removed node id is not reused",
                node.node_id
            ))
            .into()),
            _ => Ok(()),
        }
    }

    pub(super) fn put_node(&mut self, cmd: &PutNodeCmd, changes: &mut Vec<Change>) -> Outcome {
        let node_id = cmd.node.node_id;
        self.nodes.insert(node_id, cmd.node.clone());
        self.dirty.insert(Key::Node(node_id));
        changes.push(Change::Node { node_id });
        Outcome::Done
    }

    /// Every inventory group of the table and how many events are placed in it.
    pub fn events_per_group(&self) -> Vec<(GroupId, u64)> {
        let mut counts: BTreeMap<GroupId, u64> = self
            .groups
            .keys()
            .filter(|g| **g != META_GROUP)
            .map(|g| (*g, 0))
            .collect();
        for group in self.placement.values() {
            *counts.entry(*group).or_insert(0) += 1;
        }
        counts.into_iter().collect()
    }
}
