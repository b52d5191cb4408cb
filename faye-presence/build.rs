//! Embeds Faye's browser client, served at `<mount>/client.js` as Node Faye serves it, from the npm
//! package the tests install (`tests/js/node_modules/faye`, pinned in its lockfile), or from the file
//! `FAYE_BROWSER_JS` names. Without either the build still succeeds, and the route answers 404 saying
//! how to get it: the program must build on a machine without Node.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let default = manifest.join("../tests/js/node_modules/faye/client/faye-browser-min.js");
    println!("cargo:rerun-if-env-changed=FAYE_BROWSER_JS");
    let source = std::env::var_os("FAYE_BROWSER_JS").map_or(default, PathBuf::from);
    println!("cargo:rerun-if-changed={}", source.display());
    let bundle = std::fs::read(&source).unwrap_or_default();
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    std::fs::write(out.join("faye-browser-min.js"), bundle).expect("write OUT_DIR");
}
