//! `export-keys`: every stored secret, for handing keys out again. Needs no management key.

use std::io::Write;

use anyhow::Result;

use crate::cli::{ExportArgs, ExportFormat};
use crate::context::Ctx;
use crate::error::Exit;
use crate::files::output::{export_csv, export_json};
use crate::files::{SECRET_MODE, write_atomic};
use crate::store::Store;

pub fn run(ctx: &mut Ctx, args: ExportArgs) -> Result<Exit> {
    let store = Store::open_read(&args.db.db)?;
    let rows = store.export_rows()?;
    let json = args.format == ExportFormat::Json || ctx.ui.json;
    let write = |w: &mut dyn Write| {
        if json {
            export_json(w, &rows)
        } else {
            export_csv(w, &rows)
        }
    };
    if let Some(path) = &args.output {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        if !dir.is_dir() {
            return Err(crate::error::input(format!(
                "--output {}: the folder {} does not exist; nothing was written",
                path.display(),
                dir.display()
            )));
        }
        if path.is_dir() {
            return Err(crate::error::input(format!(
                "--output {}: that is a folder; give a file name (like keys.csv)",
                path.display()
            )));
        }
    }
    match &args.output {
        Some(path) => {
            write_atomic(path, SECRET_MODE, write)?;
            if ctx.ui.json {
                // The secrets are in the file; stdout still carries the one document --json promises.
                ctx.ui.json(&serde_json::json!({
                    "file": path.display().to_string(),
                    "keys": rows.len(),
                }))?;
            }
            ctx.ui.note(format!(
                "wrote {} key(s) to {} (owner-only). It holds secrets: share it safely, then delete it.",
                rows.len(),
                path.display()
            ));
        }
        None => {
            let mut out = std::io::stdout().lock();
            write(&mut out)?;
            out.flush()?;
        }
    }
    if rows.is_empty() {
        if store.all_deleted()? {
            ctx.ui
                .note("every key of this class is deleted: there are no secrets to hand out");
        } else {
            ctx.ui.note("no stored secrets yet: keys made by `classkeys provision` (or imported with `import-keys`) appear here");
        }
    }
    Ok(Exit::Ok)
}
