//! Regression: a `sim_db` that is not a usable database names the file and the cause
//! (it used to say only "sim database error").

use polyvisor_core::{ErrorKind, Settings};
use polyvisor_sim::control::SimDb;
use std::path::Path;

fn open_driver(path: &Path) -> polyvisor_core::Error {
    let s = Settings::from_pairs([("sim_db", path.to_string_lossy().into_owned())]);
    match polyvisor_sim::open(&s) {
        Ok(_) => panic!("opening {} must fail", path.display()),
        Err(e) => e,
    }
}

#[test]
fn a_file_that_is_not_a_database_is_named_with_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "these are my notes, not a database\n".repeat(200)).unwrap();
    let e = open_driver(&path);
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert_eq!(
        e.message(),
        format!(
            "cannot open the sim database {}: the file is not a SQLite database (point sim_db at a sim database or a new file)",
            path.display()
        )
    );
    // `polyvisor sim …` opens through the same path.
    let e = SimDb::open(&path, true).err().expect("admin open must fail too");
    assert!(e.message().contains(&path.display().to_string()), "{}", e.message());
    // The file is left alone.
    assert!(std::fs::read_to_string(&path).unwrap().starts_with("these are my notes"));
}

#[test]
fn a_directory_is_named_with_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_driver(dir.path());
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    let want = format!("cannot open the sim database {}: ", dir.path().display());
    assert!(e.message().starts_with(&want), "{}", e.message());
    assert_ne!(e.message(), want, "a cause follows the file name");
}
