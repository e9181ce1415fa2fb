use std::sync::OnceLock;

use super::image::relr_blocks;
use super::*;

fn header(root_size: u32) -> RootHeader {
    RootHeader {
        magic: abi::MAGIC,
        abi_version: abi::ABI_VERSION,
        root_size,
        panic_unwind: 1,
        msg_schema: abi::MSG_SCHEMA,
    }
}

/// This test executable: a PIE, so a shared object with a dynamic symbol table (and no root).
fn linked() -> &'static [u8] {
    static EXE: OnceLock<Vec<u8>> = OnceLock::new();
    EXE.get_or_init(|| std::fs::read(std::env::current_exe().unwrap()).unwrap())
}

#[test]
fn a_root_from_before_live_upgrade_is_accepted_and_does_not_migrate() {
    let full = std::mem::size_of::<PluginRoot>() as u32;
    assert!(check_header("p", &header(full)).is_ok());
    assert!(PluginRoot::has_upgrade(full));
    // A plugin built before export_state/import_actor were appended: loads, never moves.
    assert!(check_header("p", &header(abi::ROOT_SIZE_BEFORE_UPGRADE)).is_ok());
    assert!(!PluginRoot::has_upgrade(abi::ROOT_SIZE_BEFORE_UPGRADE));
    // Anything smaller lacks fields every node calls.
    let short = check_header("p", &header(abi::ROOT_SIZE_BEFORE_UPGRADE - 8));
    assert!(matches!(short, Err(PluginError::RootSize { .. })), "{short:?}");
}

#[test]
fn a_text_file_is_not_a_library_and_says_so() {
    let e = read("lib.so", b"this is not a library\n").unwrap_err();
    assert!(matches!(e, PluginError::NotALibrary { .. }), "{e:?}");
    assert_eq!(e.to_string(), "lib.so is not a plugin library: not a 64-bit ELF file");
}

#[test]
fn a_library_without_the_root_symbol_is_refused_as_no_root() {
    let e = read("exe", linked()).unwrap_err();
    assert!(matches!(e, PluginError::NoRoot { .. }), "{e:?}");
}

#[test]
fn truncated_or_damaged_files_are_errors_never_panics() {
    let bytes = linked();
    let mut cut = 0;
    while cut < bytes.len() {
        assert!(read("cut", &bytes[..cut]).is_err());
        cut = cut * 2 + 7;
    }
    // Damage the headers one byte at a time: any result but a panic is fine.
    let mut copy = bytes[..bytes.len().min(4096)].to_vec();
    for i in 0..copy.len().min(256) {
        copy[i] ^= 0xff;
        let _ = read("damaged", &copy);
        copy[i] ^= 0xff;
    }
}

#[test]
fn relr_addresses_and_bitmaps_decode_as_the_loader_reads_them() {
    // 0x1000, then a bitmap for 0x1008 (bit 1) and 0x1018 (bit 3), then 0x2000.
    let blocks = relr_blocks([0x1000, 0b1011, 0x2000].into_iter()).unwrap();
    assert_eq!(blocks, vec![(0x1000, 1), (0x1008, 0b101), (0x2000, 1)]);
    assert!(relr_blocks([0b11].into_iter()).is_err(), "a bitmap needs an address before it");
    assert!(relr_blocks([0x2000, 0x1000].into_iter()).is_err(), "addresses only ascend");
}
