//! Regression: after a burst of more than one settle batch (100) of finished deletes,
//! every read agrees: `list_guests`, `get_guest` and `polyvisor sim list` (`SimDb::list`).

use polyvisor_core::{Driver, ErrorKind, GuestId, Settings};
use polyvisor_sim::control::SimDb;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

const BURST: u32 = 150;

fn open(path: &Path) -> Arc<dyn Driver> {
    let s = Settings::from_pairs([
        ("sim_db", path.to_string_lossy().into_owned()),
        ("sim_task_ms", "0".to_string()),
        ("sim_boot_ms", "0".to_string()),
        ("sim_seed", "false".to_string()),
    ]);
    polyvisor_sim::open(&s).expect("open sim")
}

/// Seeds `BURST + 5` guests and submits a delete for the first `BURST` of them (no read
/// in between, so every delete is due but none is applied yet). Returns the deleted ids
/// and the survivors.
async fn burst_of_deletes(path: &Path) -> (Arc<dyn Driver>, Vec<GuestId>, Vec<GuestId>) {
    let ctl = SimDb::open(path, false).unwrap();
    let (first, last) = ctl.seed_guests(BURST + 5, "burst").unwrap().expect("seeded");
    assert_eq!(last - first + 1, i64::from(BURST + 5));
    let d = open(path);
    let ids: Vec<GuestId> = (first..=last).map(|i| GuestId::new(i.to_string())).collect();
    let (gone, kept) = ids.split_at(BURST as usize);
    for id in gone {
        d.delete_guest(id).await.unwrap();
    }
    (d, gone.to_vec(), kept.to_vec())
}

fn ids(list: &[polyvisor_core::GuestSummary]) -> HashSet<String> {
    list.iter().map(|g| g.id.as_str().to_string()).collect()
}

#[tokio::test]
async fn list_and_get_agree_after_150_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("burst.db");
    let (d, gone, kept) = burst_of_deletes(&path).await;
    let listed = ids(&d.list_guests().await.unwrap());
    let stale: Vec<&GuestId> = gone.iter().filter(|g| listed.contains(g.as_str())).collect();
    assert!(stale.is_empty(), "guests/list still shows {} deleted guests, e.g. {:?}", stale.len(), stale.first());
    assert!(kept.iter().all(|g| listed.contains(g.as_str())), "survivors listed");
    for id in &gone {
        let e = d.get_guest(id).await.expect_err("deleted guest must not be found");
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }
    for id in &kept {
        d.get_guest(id).await.unwrap();
    }
    assert_eq!(ids(&d.list_guests().await.unwrap()), listed, "a second list agrees with the first");
}

#[tokio::test]
async fn sim_list_settles_due_tasks_like_the_driver() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("burst.db");
    let (_d, gone, kept) = burst_of_deletes(&path).await;
    // The admin view first, before any driver read could settle the deletes.
    let ctl = SimDb::open(&path, false).unwrap();
    let listed = ids(&ctl.list().unwrap());
    assert!(gone.iter().all(|g| !listed.contains(g.as_str())), "polyvisor sim list shows deleted guests");
    assert_eq!(listed.len(), kept.len());
    let c = ctl.counts().unwrap();
    assert_eq!((c.guests, c.running_tasks), (i64::from(kept.len() as u32), 0));
}
