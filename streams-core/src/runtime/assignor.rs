//! The sticky assignor: tasks to stream threads, balanced, moving as few tasks as possible.
//!
//! Every member ends with `⌊n/m⌋` or `⌈n/m⌉` tasks. A task stays with its previous owner
//! whenever that owner is still a member and keeping it does not break the balance, so a
//! thread that dies hands out only its own tasks and a thread that joins takes only what it
//! needs to reach its share. Moving a task costs a restore, which is why stickiness matters.

use std::collections::BTreeMap;

use crate::ids::TaskId;

/// Assigns `tasks` to `members` (thread indexes), preferring `previous` owners.
/// Deterministic for equal inputs; returns an empty map when there are no members.
pub(crate) fn assign(
    tasks: &[TaskId],
    members: &[usize],
    previous: &BTreeMap<TaskId, usize>,
) -> BTreeMap<TaskId, usize> {
    let mut result = BTreeMap::new();
    if members.is_empty() {
        return result;
    }
    let floor = tasks.len() / members.len();
    // How many members may hold one task more than `floor`.
    let mut above_floor = tasks.len() % members.len();
    let mut counts: BTreeMap<usize, usize> = members.iter().map(|&m| (m, 0)).collect();
    let mut unassigned = Vec::new();

    // First, previous owners keep up to `floor` of their tasks.
    let mut leftover = Vec::new();
    for &task in tasks {
        match previous
            .get(&task)
            .and_then(|o| counts.get_mut(o).map(|c| (*o, c)))
        {
            Some((owner, count)) if *count < floor => {
                *count += 1;
                result.insert(task, owner);
            }
            Some(_) => leftover.push(task),
            None => unassigned.push(task),
        }
    }
    // Then one more each, while members above the floor are allowed.
    for task in leftover {
        let owner = previous[&task];
        let count = counts.get_mut(&owner);
        match count {
            Some(c) if *c == floor && above_floor > 0 => {
                *c += 1;
                above_floor -= 1;
                result.insert(task, owner);
            }
            _ => unassigned.push(task),
        }
    }
    // The rest go to the least-loaded member (lowest index on ties).
    unassigned.sort();
    for task in unassigned {
        let (&member, _) = counts
            .iter()
            .min_by_key(|&(&m, &c)| (c, m))
            .expect("members is not empty");
        if let Some(c) = counts.get_mut(&member) {
            *c += 1;
        }
        result.insert(task, member);
    }
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tasks(subs: u32, partitions: u32) -> Vec<TaskId> {
        (0..subs)
            .flat_map(|s| (0..partitions).map(move |p| TaskId::new(s, p)))
            .collect()
    }

    fn loads(a: &BTreeMap<TaskId, usize>, members: &[usize]) -> Vec<usize> {
        members
            .iter()
            .map(|m| a.values().filter(|&&o| o == *m).count())
            .collect()
    }

    #[test]
    fn spreads_evenly_from_scratch() {
        let a = assign(&tasks(2, 3), &[0, 1, 2, 3], &BTreeMap::new());
        assert_eq!(a.len(), 6);
        assert_eq!(loads(&a, &[0, 1, 2, 3]), vec![2, 2, 1, 1]);
    }

    #[test]
    fn no_members_no_assignment() {
        assert!(assign(&tasks(1, 4), &[], &BTreeMap::new()).is_empty());
    }

    proptest! {
        #[test]
        fn balanced_and_complete(subs in 1u32..4, parts in 1u32..9, members in 1usize..6) {
            let members: Vec<usize> = (0..members).collect();
            let all = tasks(subs, parts);
            let a = assign(&all, &members, &BTreeMap::new());
            prop_assert_eq!(a.len(), all.len());
            let l = loads(&a, &members);
            prop_assert!(l.iter().max().unwrap() - l.iter().min().unwrap() <= 1);
        }

        /// After a member leaves a balanced group, every task of a surviving member stays.
        #[test]
        fn a_leaving_member_moves_only_its_tasks(
            subs in 1u32..4, parts in 1u32..9, n in 2usize..6, leaver in 0usize..6,
        ) {
            let members: Vec<usize> = (0..n).collect();
            let all = tasks(subs, parts);
            let before = assign(&all, &members, &BTreeMap::new());
            let leaver = leaver % n;
            let survivors: Vec<usize> = members.iter().copied().filter(|&m| m != leaver).collect();
            let after = assign(&all, &survivors, &before);
            let l = loads(&after, &survivors);
            prop_assert!(l.iter().max().unwrap() - l.iter().min().unwrap() <= 1);
            for (task, owner) in &before {
                if *owner != leaver {
                    prop_assert_eq!(after[task], *owner);
                }
            }
        }

        /// A joining member takes only what it needs to reach its share.
        #[test]
        fn a_joining_member_takes_only_its_share(subs in 1u32..4, parts in 1u32..9, n in 1usize..5) {
            let members: Vec<usize> = (0..n).collect();
            let all = tasks(subs, parts);
            let before = assign(&all, &members, &BTreeMap::new());
            let mut grown = members.clone();
            grown.push(n);
            let after = assign(&all, &grown, &before);
            let moved = all.iter().filter(|t| before[t] != after[t]).count();
            prop_assert_eq!(moved, loads(&after, &[n])[0]);
            prop_assert!(moved <= all.len().div_ceil(n + 1));
        }
    }
}
