//! Embeds the dashboard (`web/dist`, built by `web/build.mjs` from `scripts/setup`) into the
//! binary, so installing the binary is enough. Without a built `web/dist` the binary still
//! builds, and the dashboard's page says how to build it.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let dist = Path::new("web/dist");
    println!("cargo:rerun-if-changed=web/dist");
    let mut files: Vec<String> = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dist) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let plain = e.file_type().is_ok_and(|t| t.is_file());
            // Served names only: the precompressed twins ride along with their file, and the
            // manifest is for the bench.
            if plain && !name.ends_with(".gz") && name != "manifest.json" && !name.starts_with('.')
            {
                files.push(name);
            }
        }
    }
    files.sort();
    let mut out = String::from(
        "/// A file: its name, its bytes, and its gzipped bytes if built.\n\
         pub type Embedded = (&'static str, &'static [u8], Option<&'static [u8]>);\n\
         pub static ASSETS: &[Embedded] = &[\n",
    );
    for f in &files {
        let abs = std::fs::canonicalize(dist.join(f)).expect("a dist file");
        let gz = dist.join(format!("{f}.gz"));
        let gz = if gz.is_file() {
            format!(
                "Some(include_bytes!({:?}))",
                std::fs::canonicalize(gz).expect("a dist file")
            )
        } else {
            "None".to_string()
        };
        let _ = writeln!(out, "    ({f:?}, include_bytes!({abs:?}), {gz}),");
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("web_assets.rs");
    std::fs::write(dest, out).expect("write web_assets.rs");
}
