//! Which instance runs which task, learnt from the consumer group itself.
//!
//! Each instance's group member carries `<process id>@<application.server>` in its
//! `client.id` (the member tag, see [`member_tag`]); a description of the group
//! ([`Log::describe_group`](crate::Log::describe_group), Kafka's DescribeGroups) gives every
//! member's client id and the partitions its current generation assigned it. The runtime
//! reads the tasks from the anchor partitions, as the rebalance listener does for this
//! instance.
//!
//! A description is trusted only when it cannot be of another moment than this instance's
//! own assignment: the group is `Stable` (the coordinator hands out assignments only then),
//! this instance is among its members with exactly the tasks its listener was last given,
//! no rebalance callback ran while it was taken, and no task is held by two members. Anything
//! else is [`Error::MetadataUnavailable`], retriable: mid-rebalance the answer is "not now",
//! never a stale owner. A description is kept until the next rebalance callback of this
//! instance (with the eager protocol every rebalance of the group calls it), and at most
//! [`MAX_AGE`] (a static member that came back with another endpoint causes no rebalance).
//!
//! Stale metadata cannot make an answer wrong: only the instance that runs a task answers
//! for its keys (see the HTTP server); an instance asked about a key it does not hold says
//! where the key lives, or that it does not know, and never that the key is absent.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::host::HostInfo;
use super::Shared;
use crate::error::{Error, Result};
use crate::ids::TaskId;
use crate::log::GroupDescription;

/// The longest a group description is used without asking the group again.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(1);

/// How long an answer of "not available" is kept, so that a burst of queries during a
/// rebalance does not become a burst of requests to the coordinator.
const UNAVAILABLE_AGE: Duration = Duration::from_millis(100);

/// What this instance's member carries in its `client.id`, after an `@`.
pub(crate) fn member_tag(process_id: &str, endpoint: Option<&HostInfo>) -> String {
    match endpoint {
        Some(e) => format!("{process_id}@{e}"),
        None => format!("{process_id}@"),
    }
}

/// Reads a member's `client.id`: `<anything>@<process id>@<endpoint or nothing>`. `None`
/// for a client id without a tag (a member that is not an instance of this library).
fn parse_client_id(client_id: &str) -> Option<(String, Option<HostInfo>)> {
    let mut parts = client_id.rsplitn(3, '@');
    let endpoint = parts.next()?;
    let process_id = parts.next()?;
    parts.next()?;
    if process_id.len() != 32 || !process_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let host = if endpoint.is_empty() {
        None
    } else {
        // A tag this library wrote holds a valid endpoint; another is no endpoint.
        HostInfo::parse(endpoint).ok()
    };
    Some((process_id.to_string(), host))
}

/// One instance in a group description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ViewMember {
    pub(crate) process_id: String,
    pub(crate) host: Option<HostInfo>,
    pub(crate) local: bool,
    pub(crate) tasks: BTreeSet<TaskId>,
}

/// Every instance and the tasks it runs, at one moment.
#[derive(Debug)]
pub(crate) struct GroupView {
    /// Sorted by endpoint (those without one last), then process id.
    pub(crate) members: Vec<ViewMember>,
    owners: BTreeMap<TaskId, usize>,
}

impl GroupView {
    fn new(mut members: Vec<ViewMember>) -> std::result::Result<GroupView, String> {
        members.sort_by(|a, b| {
            (a.host.is_none(), &a.host, &a.process_id).cmp(&(
                b.host.is_none(),
                &b.host,
                &b.process_id,
            ))
        });
        let mut owners = BTreeMap::new();
        for (i, m) in members.iter().enumerate() {
            for t in &m.tasks {
                if let Some(other) = owners.insert(*t, i) {
                    return Err(format!(
                        "task {t} is assigned to both instance {} and instance {}",
                        members[other].process_id, m.process_id
                    ));
                }
            }
        }
        Ok(GroupView { members, owners })
    }

    /// The instance running `task`, if one does.
    pub(crate) fn owner(&self, task: TaskId) -> Option<&ViewMember> {
        self.owners.get(&task).and_then(|&i| self.members.get(i))
    }
}

/// The last description, and when it was taken.
struct Snapshot {
    /// The rebalance callbacks seen before it was taken.
    epoch: u64,
    taken: Instant,
    view: std::result::Result<Arc<GroupView>, String>,
}

/// The cache of the group's description.
#[derive(Default)]
pub(crate) struct Instances {
    /// Bumped by every rebalance callback of this instance's member.
    epoch: std::sync::atomic::AtomicU64,
    last: parking_lot::Mutex<Option<Snapshot>>,
    /// Held while the group is being described, so that one description serves every
    /// query waiting for it.
    describing: parking_lot::Mutex<()>,
}

impl Instances {
    /// The group rebalanced (this instance's partitions were revoked or assigned): the
    /// description is out of date.
    pub(crate) fn rebalanced(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    fn fresh(&self) -> Option<std::result::Result<Arc<GroupView>, String>> {
        let last = self.last.lock();
        let s = last.as_ref()?;
        let age = match s.view {
            Ok(_) => MAX_AGE,
            Err(_) => UNAVAILABLE_AGE,
        };
        (s.epoch == self.epoch.load(Ordering::SeqCst) && s.taken.elapsed() < age)
            .then(|| s.view.clone())
    }
}

impl Shared {
    /// Every instance and its tasks: this one alone on a log without groups, else the
    /// group's description (cached; see the module docs).
    pub(crate) fn group_view(&self) -> Result<Arc<GroupView>> {
        if self.group.lock().owned.is_none() {
            let me = ViewMember {
                process_id: self.process_id.clone(),
                host: self.endpoint.clone(),
                local: true,
                tasks: self.tasks.iter().copied().collect(),
            };
            return Ok(Arc::new(GroupView::new(vec![me]).map_err(unavailable)?));
        }
        let instances = &self.instances;
        if let Some(view) = instances.fresh() {
            return view.map_err(unavailable);
        }
        let _describing = instances.describing.lock();
        // Another query may have described the group while this one waited.
        if let Some(view) = instances.fresh() {
            return view.map_err(unavailable);
        }
        let epoch = instances.epoch.load(Ordering::SeqCst);
        let description = self.log.describe_group(&self.config.application_id);
        let view = match description {
            Ok(Some(d)) => self.view_of(&d, epoch),
            Ok(None) => Err("the log describes no consumer groups".to_string()),
            // Not kept: the next query asks again.
            Err(e) => {
                return Err(Error::MetadataUnavailable {
                    reason: format!("describing the consumer group failed: {}", e.report()),
                })
            }
        };
        let view = view.map(Arc::new);
        if let Err(reason) = &view {
            tracing::debug!(%reason, "the group's description is not usable now");
        }
        *instances.last.lock() = Some(Snapshot {
            epoch,
            taken: Instant::now(),
            view: view.clone(),
        });
        view.map_err(unavailable)
    }

    /// Checks a description against this instance's own assignment and reads the tasks of
    /// each member from its anchor partitions.
    fn view_of(&self, d: &GroupDescription, epoch: u64) -> std::result::Result<GroupView, String> {
        if d.state != "Stable" {
            return Err(format!("the consumer group is {}, not Stable", d.state));
        }
        let mut members = Vec::with_capacity(d.members.len());
        for m in &d.members {
            let tasks: BTreeSet<TaskId> = m
                .assignment
                .iter()
                .filter_map(|tp| {
                    let sub = self.anchors.get(&tp.topic)?;
                    Some(TaskId::new(*sub, tp.partition))
                })
                .collect();
            let Some((process_id, host)) = parse_client_id(&m.client_id) else {
                if tasks.is_empty() {
                    continue;
                }
                return Err(format!(
                    "group member {} (client id `{}`) holds tasks but is no instance of this \
                     library: its client id carries no process id and application server",
                    m.member_id, m.client_id
                ));
            };
            let local = process_id == self.process_id;
            members.push(ViewMember {
                process_id,
                host,
                local,
                tasks,
            });
        }
        let group = self.group.lock();
        if self.instances.epoch.load(Ordering::SeqCst) != epoch {
            return Err("the group rebalanced while it was being described".into());
        }
        let owned = group.owned.clone().unwrap_or_default();
        drop(group);
        let mine: Vec<&ViewMember> = members.iter().filter(|m| m.local).collect();
        match mine.as_slice() {
            [] => {
                return Err("this instance is not among the group's members yet".into());
            }
            [me] if me.tasks != owned => {
                return Err(format!(
                    "the group gives this instance tasks {} while it was last given {}: a \
                     rebalance is under way",
                    list(&me.tasks),
                    list(&owned)
                ));
            }
            [_] => {}
            _ => {
                return Err(format!(
                    "two members of the group carry this instance's process id {}: two \
                     instances share a state directory's process-id file",
                    self.process_id
                ));
            }
        }
        GroupView::new(members)
    }
}

fn list(tasks: &BTreeSet<TaskId>) -> String {
    if tasks.is_empty() {
        return "none".into();
    }
    let names: Vec<String> = tasks.iter().map(ToString::to_string).collect();
    names.join(", ")
}

fn unavailable(reason: String) -> Error {
    Error::MetadataUnavailable { reason }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const PID: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_member_tag_reads_back_from_the_client_id() {
        let host = HostInfo::parse("10.1.2.3:7070").ok();
        let id = format!("orders@eu@{}", member_tag(PID, host.as_ref()));
        assert_eq!(parse_client_id(&id), Some((PID.to_string(), host)));
        let id = format!("orders@{}", member_tag(PID, None));
        assert_eq!(parse_client_id(&id), Some((PID.to_string(), None)));
        let v6 = HostInfo::parse("[::1]:80").ok();
        let id = format!("x@{}", member_tag(PID, v6.as_ref()));
        assert_eq!(parse_client_id(&id), Some((PID.to_string(), v6)));
    }

    #[test]
    fn client_ids_without_a_tag_are_no_instances() {
        for id in [
            "rdkafka",
            "app@host:1",
            "app@nothex-nothex-nothex-nothex-00@h:1",
            &format!("{PID}@h:1"),
        ] {
            assert_eq!(parse_client_id(id), None, "{id}");
        }
    }

    #[test]
    fn a_task_held_twice_makes_no_view() {
        let member = |pid: &str, tasks: &[u32]| ViewMember {
            process_id: pid.into(),
            host: None,
            local: false,
            tasks: tasks.iter().map(|p| TaskId::new(0, *p)).collect(),
        };
        let view = GroupView::new(vec![member("b", &[1, 2]), member("a", &[0])]);
        let view = view.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            view.owner(TaskId::new(0, 2)).map(|m| m.process_id.as_str()),
            Some("b")
        );
        assert!(view.owner(TaskId::new(0, 3)).is_none());
        let error = GroupView::new(vec![member("a", &[0, 1]), member("b", &[1])]).unwrap_err();
        assert!(error.contains("task 0_1"), "{error}");
    }
}
