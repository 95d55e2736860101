//! Every flag and `BOXOFFICE_*` environment variable the files under `deploy/` (and its
//! subfolders: compose, systemd, Kubernetes) use exists: it appears in `boxoffice node
//! --help`, `boxoffice api --help` or the help of a `boxoffice admin` command. A variable a
//! deploy script reads with a default of its own (`${NAME:-…}`) is the script's, not the
//! binary's.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use boxoffice_tests::binary;

fn help(command: &[&str]) -> String {
    let output = Command::new(binary())
        .args(command)
        .arg("--help")
        .output()
        .expect("boxoffice runs");
    assert!(
        output.status.success(),
        "boxoffice {command:?} --help failed"
    );
    String::from_utf8(output.stdout).expect("help is UTF-8")
}

/// Every file below `dir`.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable folder") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(files_below(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// `--flag` words and `BOXOFFICE_*` names in `text`, minus variables it assigns itself.
fn used_names(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut flags = BTreeSet::new();
    let mut vars = BTreeSet::new();
    for (i, _) in text.match_indices("--") {
        let before = text[..i].chars().next_back();
        if before.is_some_and(|c| is_name(c) || c == '-') {
            continue;
        }
        let name: String = text[i + 2..].chars().take_while(|&c| is_name(c)).collect();
        if name.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
            flags.insert(format!("--{name}"));
        }
    }
    for (i, _) in text.match_indices("BOXOFFICE_") {
        let name: String = text[i..].chars().take_while(|&c| is_name(c)).collect();
        if !text.contains(&format!("${{{name}:-")) {
            vars.insert(name);
        }
    }
    (flags, vars)
}

/// Flags that belong to other programs the deploy files run, not to boxoffice: cargo,
/// useradd (Dockerfile, the systemd unit's notes) and kubectl (the Kubernetes notes).
const OTHER_PROGRAMS_FLAGS: &[&str] = &[
    "--release",
    "--bin",
    "--help",
    "--system",
    "--home",
    "--from-literal",
];

#[test]
fn deploy_files_use_only_real_flags_and_variables() {
    let commands: [&[&str]; 9] = [
        &["node"],
        &["api"],
        &["admin"],
        &["admin", "cluster"],
        &["admin", "nodes", "add"],
        &["admin", "nodes", "drain"],
        &["admin", "groups", "add"],
        &["admin", "groups", "move"],
        &["admin", "groups", "leader"],
    ];
    let known: String = commands.iter().map(|c| help(c) + "\n").collect();
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let mut checked = 0;
    let mut unknown = Vec::new();
    let files = files_below(&deploy);
    for dir in ["k8s", "systemd"] {
        assert!(
            files.iter().any(|f| f.starts_with(deploy.join(dir))),
            "deploy/{dir} has files"
        );
    }
    for path in files {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let (flags, vars) = used_names(&text);
        for flag in flags {
            if OTHER_PROGRAMS_FLAGS.contains(&flag.as_str()) {
                continue;
            }
            checked += 1;
            // A flag shows in help as `--name <VALUE>`, `--name\n` or `--name ` (a switch).
            let present = [" ", "\n", "="]
                .iter()
                .any(|end| known.contains(&format!("{flag}{end}")));
            if !present {
                unknown.push(format!("{}: {flag}", path.display()));
            }
        }
        for var in vars {
            checked += 1;
            if !known.contains(&var) {
                unknown.push(format!("{}: {var}", path.display()));
            }
        }
    }
    assert!(checked >= 30, "deploy/ uses flags ({checked} checked)");
    assert!(
        unknown.is_empty(),
        "not in boxoffice node/api --help: {unknown:#?}"
    );
}

#[test]
fn the_check_itself_sees_a_made_up_flag_and_variable() {
    let (flags, vars) = used_names(
        "BIN=${BOXOFFICE_BIN:-x}\n\"$BIN\" node --made-up 1 \
         BOXOFFICE_MADE_UP=1 --data-dir d",
    );
    assert!(
        flags.contains("--made-up") && flags.contains("--data-dir"),
        "{flags:?}"
    );
    assert!(vars.contains("BOXOFFICE_MADE_UP"), "{vars:?}");
    assert!(
        !vars.contains("BOXOFFICE_BIN"),
        "a script's own variable: {vars:?}"
    );
}
