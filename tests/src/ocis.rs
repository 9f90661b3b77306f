//! oCIS audit lines shaped exactly like the audit service writes them
//! (`services/audit/pkg/types`, json.Marshal of the structs: CamelCase keys in
//! struct order, no envelope), and a writer that appends like oCIS does:
//! open with O_APPEND, write one line, close, for every event.

use std::io::Write;
use std::path::Path;

/// The `n`-th line of a realistic mix: uploads, downloads, shares, public
/// links, user changes. Each carries `n` in its FileID/UserID so tests can
/// tell lines apart.
pub fn line(n: u64) -> String {
    let user = "b1f74ec4-dd7e-11ef-a543-03775734d0f7";
    let space = "1284d238-aa92-42ce-bdc4-0b0000009157$b1f74ec4-dd7e-11ef-a543-03775734d0f7";
    let item = format!("a7d1f2c0-3b6e-4f0e-9c1d-{n:012x}");
    let base = |user_field: &str, message: &str, action: &str| {
        format!(
            r#"{{"RemoteAddr":"","User":"{user_field}","URL":"","Method":"","UserAgent":"","Time":"2025-02-13T15:50:18Z","App":"admin_audit","Message":"{message}","Action":"{action}","CLI":false,"Level":1"#
        )
    };
    match n % 4 {
        0 => format!(
            r#"{},"Path":"","Owner":"{user}","FileID":"{space}!{item}"}}"#,
            base(
                user,
                &format!("user '{user}' created file '{space}!{item}'"),
                "file_create"
            )
        ),
        1 => format!(
            r#"{},"Path":"","Owner":"","FileID":"{space}!{item}"}}"#,
            base("", &format!("user '{user}' read file '{space}!{item}'"), "file_read")
        ),
        2 => format!(
            r#"{},"FileID":"{item}","Owner":"{user}","Path":"","ShareID":"","ItemType":"","ExpirationDate":"","SharePass":true,"Permissions":"get_path:true stat:true","ShareType":"link","ShareWith":"","ShareOwner":"{user}","ShareToken":"tok{n}"}}"#,
            base(
                user,
                &format!("user '{user}' created a public link to file '{item}' with id 'tok{n}'"),
                "file_shared"
            )
        ),
        _ => format!(
            r#"{},"UserID":"056fc874-dd7f-11ef-ba84-{n:012x}"}}"#,
            base(
                "",
                &format!("user 'some-admin-uuid' created the user '056fc874-dd7f-11ef-ba84-{n:012x}'"),
                "user_created"
            )
        ),
    }
}

/// Appends one line the way oCIS does (open, append, close).
pub fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open the audit file");
    f.write_all(format!("{text}\n").as_bytes()).expect("append a line");
}

/// Appends lines `from..to` in one write (a burst, or a file written while we were down).
pub fn append_range(path: &Path, from: u64, to: u64) {
    let text: String = (from..to).map(|n| line(n) + "\n").collect();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open the audit file");
    f.write_all(text.as_bytes()).expect("append lines");
}
