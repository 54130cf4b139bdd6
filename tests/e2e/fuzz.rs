//! A bounded fuzz run over the readers of the files instructors edit and hand around (roster.csv,
//! limits.csv, api_keys_*.csv): seeds from tests/fuzz/, mutated the ways spreadsheets, editors
//! and attackers mangle CSV. No input may make a reader panic; every refusal is an error that
//! names the file. Deterministic (a fixed seed), and bounded in count and time.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use classkeys::commands::import_keys;
use classkeys::files::limits::LimitsFile;
use classkeys::files::roster::Roster;

/// A small, fixed-seed generator: the same run every time.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: &[&[u8]] = &[
    b",",
    b"\"",
    b"\n",
    b"\r",
    b"\r\n",
    b"\xEF\xBB\xBF",
    b"\xFF",
    b"\xC3",
    b"=",
    b"@",
    b";",
    b"\t",
    b"\0",
    b"'",
    b"@FIXME.edu",
    b"unlimited",
    b"-1",
    b"NaN",
    b"1e309",
    b"daily",
    b"true",
    b"\xe2\x80\xae",
    b"email",
    b"name",
    b"target_limit",
    b"api_key",
    b"sk-or-v1-",
    b"\x1b[2J",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(7) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 => {
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                data.splice(at..at, piece.iter().copied());
            }
            2 => {
                let end = (at + rng.below(16)).min(data.len());
                data.drain(at..end);
            }
            3 => data.truncate(at),
            4 => {
                // A line repeated (a pasted row, a duplicate student).
                let line: Vec<u8> = data[at..]
                    .split(|b| *b == b'\n')
                    .next()
                    .unwrap_or(&[])
                    .to_vec();
                data.extend_from_slice(b"\n");
                data.extend_from_slice(&line);
            }
            5 => {
                let n = rng.below(1200);
                data.splice(at..at, std::iter::repeat_n(b'x', n));
            }
            _ => {
                let b = rng.next() as u8;
                data.insert(at, b);
            }
        }
    }
    data
}

fn seeds(folder: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz")
        .join(folder);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fuzz corpus missing: {} ({e})", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out.sort();
    out
}

fn fuzz(folder: &str, read: impl Fn(&Path) -> Result<(), String>) {
    let seeds = seeds(folder);
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join(format!("{folder}.csv"));
    let mut rng = Rng(0x05ee_dc1a_55e5 ^ folder.len() as u64);
    let started = Instant::now();
    let mut runs = 0;
    while runs < 3000 && started.elapsed() < Duration::from_secs(20) {
        let seed = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, seed);
        std::fs::write(&path, &input).unwrap();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| read(&path)));
        match result {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => assert!(
                msg.contains(&path.display().to_string()),
                "{folder}: the error does not name the file: {msg}\ninput: {:?}",
                String::from_utf8_lossy(&input)
            ),
            Err(_) => panic!(
                "{folder}: a reader panicked on {:?}",
                String::from_utf8_lossy(&input)
            ),
        }
        runs += 1;
    }
    assert!(runs >= 100, "{folder}: only {runs} runs");
}

#[test]
fn no_roster_makes_the_reader_panic() {
    fuzz("roster", |p| {
        Roster::read(p).map(|_| ()).map_err(|e| format!("{e:#}"))
    });
}

#[test]
fn no_limits_file_makes_the_reader_panic() {
    fuzz("limits", |p| {
        LimitsFile::read(p)
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    });
}

#[test]
fn no_api_keys_file_makes_the_reader_panic() {
    fuzz("api_keys", |p| {
        import_keys::read_all(&[p.to_path_buf()])
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    });
}
