//! Build script: finds the Python that pyo3 found (PYO3_PYTHON or python3 on PATH), refuses
//! versions older than 3.13, and bakes in what the module needs at load time: an rpath to
//! libpython and the Python home to initialise with.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    println!("cargo:rerun-if-changed=build.rs");
    let config = pyo3_build_config::get();
    let version = config.version();
    if (version.major, version.minor) < (3, 13) {
        panic!(
            "gearbox needs Python 3.13 or newer with its shared library (own-GIL sub-interpreters \
             are not stable before 3.13); pyo3 found {}.{} at {:?}. Point PYO3_PYTHON at a 3.13+ \
             interpreter (the Makefile does this for you).",
            version.major,
            version.minor,
            config.executable()
        );
    }
    if config.shared() {
        if let Some(dir) = config.lib_dir() {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        }
    } else {
        panic!("gearbox needs a Python built with --enable-shared (libpython3.x.so); {:?} is static", config.executable());
    }
    let executable = config.executable().map(|e| e.to_string()).unwrap_or_else(|| "python3".to_string());
    let home = Command::new(&executable)
        .args(["-c", "import sys; print(sys.base_prefix, end='')"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|| panic!("could not ask {executable} for sys.base_prefix"));
    println!("cargo:rustc-env=GEARBOX_PYTHON_HOME={home}");
    println!("cargo:rustc-env=GEARBOX_PYTHON_VERSION={}.{}", version.major, version.minor);
}
