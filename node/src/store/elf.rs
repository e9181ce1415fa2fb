//! The unload guard against the toolchain: a library whose dynamic section sets
//! `DF_1_NODELETE` (in `DT_FLAGS_1`, from `-Wl,-z,nodelete`) can never be unloaded — glibc's
//! `dlclose` silently does nothing — so the node clears that one bit in its private copy of
//! the library (see [`crate::store::libcopy`]) before it is opened
//! (`reference/dylib-unloading.md` §7; rust-lang/rust pull request 158402 proposes the flag
//! for every GNU/Linux Rust object).
//!
//! **Why clearing is sound here.** The flag changes one thing: `dlclose` never unmaps the
//! object. It changes no symbol binding, no relocation and no initialiser. What it protects
//! against is code of the library that could still be called after an unmap, and the node
//! already rules each of those out for every plugin (which is why plugins built without the
//! flag, all of them today, unload safely):
//! - thread-local destructors registered with `__cxa_thread_atexit_impl`: glibc itself keeps
//!   the object mapped while any is pending, flag or not;
//! - pthread-key destructors (std's `thread::current` handle, which do not pin the object):
//!   they run only when a thread that set the key exits. Only the version's own threads ever
//!   call into its libraries, and the closer joins every one of them *before* `dlclose`
//!   (host/closer.rs), so none of them can run afterwards; the SDK itself touches neither
//!   (actor-abi/src/sdk);
//! - `atexit` handlers of the library: glibc runs them at `dlclose`;
//! - pointers into the library kept by the node: the ABI copies every byte during the call
//!   and the root is dropped before the close; threads of the plugin's own are forbidden, and
//!   `on_unload` must stop anything it started.
//!
//! If a library still stays mapped for another reason, [`LibImage::release`] notices it
//! (`RTLD_NOLOAD`) and keeps its memory file, as for any pinned library.
//!
//! Only the private copy changes: the zip, its sha256 and the stored zip keep the bytes that
//! were loaded, and only the `DF_1_NODELETE` bit of `DT_FLAGS_1` is cleared, every other flag
//! and entry is left alone. The entries patched are the ones glibc reads: the last
//! `PT_DYNAMIC` segment, found at its virtual address inside the `PT_LOAD` segment that maps
//! it, up to `DT_NULL`. The parsing is the `object` crate's. Only 64-bit ELF is looked at
//! (both byte orders; the node runs on 64-bit linux-gnu targets, whose loader refuses a 32-bit
//! object anyway). Bytes that are not such an object, or are malformed, are left as they are
//! for `dlopen` to refuse with its own message.
//!
//! [`LibImage::release`]: crate::store::libcopy::LibImage::release

use object::elf::{
    Dyn64, FileHeader64, ProgramHeader64, DF_1_NODELETE, DT_FLAGS_1, DT_NULL, PT_DYNAMIC, PT_LOAD,
};
use object::read::elf::{Dyn as _, FileHeader as _, ProgramHeader as _};
use object::Endianness;

type Header = FileHeader64<Endianness>;
type Phdr = ProgramHeader64<Endianness>;
type Entry = Dyn64<Endianness>;

/// Why a library that sets `DF_1_NODELETE` could not be cleared of it: the load is refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Unpatchable(&'static str);

impl std::fmt::Display for Unpatchable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "it sets DF_1_NODELETE (linked with -z nodelete), which would keep it loaded forever, and the node \
             cannot clear the flag in its copy: {} — relink it without -z nodelete",
            self.0
        )
    }
}

/// Whether a library sets `DF_1_NODELETE` where the loader reads it (`troupe pack` warns: a
/// node clears the flag in its private copy, but the author may not know it is there).
pub fn sets_nodelete(bytes: &[u8]) -> bool {
    !matches!(scan(bytes), Scan::Clean)
}

/// What the loader would find in a library.
#[derive(Debug, PartialEq, Eq)]
enum Scan {
    /// Not a readable 64-bit ELF object, no dynamic segment, or no `DF_1_NODELETE`.
    Clean,
    /// File offsets of the `DT_FLAGS_1` entries that set `DF_1_NODELETE`.
    Flagged(Endianness, Vec<usize>),
    /// The flag is set, but not where the loader reads the dynamic entries from.
    Unreachable,
}

/// The bytes to copy for `bytes` without `DF_1_NODELETE`: `Ok(None)` when there is nothing to
/// clear (copy `bytes` as they are), `Ok(Some(copy))` with exactly that bit cleared, or why the
/// flag cannot be cleared.
pub(crate) fn without_nodelete(bytes: &[u8]) -> Result<Option<Vec<u8>>, Unpatchable> {
    let (endian, entries) = match scan(bytes) {
        Scan::Clean => return Ok(None),
        Scan::Unreachable => return Err(Unpatchable("its dynamic segment is not inside a loaded segment")),
        Scan::Flagged(endian, entries) => (endian, entries),
    };
    let mut copy = bytes.to_vec();
    for at in entries {
        let Some(Ok((entry, _))) = copy.get_mut(at..).map(object::pod::from_bytes_mut::<Entry>) else {
            return Err(Unpatchable("a DT_FLAGS_1 entry is out of bounds"));
        };
        let flags = entry.d_val.get(endian);
        entry.d_val.set(endian, flags & !DF_1_NODELETE.0);
    }
    // What the loader will read must now be clean.
    match scan(&copy) {
        Scan::Clean => Ok(Some(copy)),
        _ => Err(Unpatchable("the flag is still set after clearing it")),
    }
}

/// Finds the `DT_FLAGS_1` entries that set `DF_1_NODELETE` where glibc reads them.
fn scan(bytes: &[u8]) -> Scan {
    let Ok(header) = Header::parse(bytes) else {
        return Scan::Clean;
    };
    let Ok(endian) = header.endian() else {
        return Scan::Clean;
    };
    let Ok(phdrs) = header.program_headers(endian, bytes) else {
        return Scan::Clean;
    };
    // glibc keeps the last PT_DYNAMIC it sees.
    let Some(dynamic) = phdrs.iter().rev().find(|ph| ph.p_type(endian) == PT_DYNAMIC) else {
        return Scan::Clean;
    };
    let Some((start, entries)) = loaded_entries(phdrs, dynamic, endian, bytes) else {
        // The loader cannot find the entries in the file: refuse only if the file says nodelete.
        let file_view = dynamic.dynamic(endian, bytes).ok().flatten().unwrap_or(&[]);
        return if flagged(file_view, endian).next().is_some() { Scan::Unreachable } else { Scan::Clean };
    };
    let at: Vec<usize> = flagged(entries, endian).map(|i| start + i * size_of::<Entry>()).collect();
    if at.is_empty() {
        Scan::Clean
    } else {
        Scan::Flagged(endian, at)
    }
}

/// Indexes of the entries before `DT_NULL` that are `DT_FLAGS_1` with `DF_1_NODELETE` set.
fn flagged(entries: &[Entry], endian: Endianness) -> impl Iterator<Item = usize> + '_ {
    entries
        .iter()
        .take_while(move |e| e.d_tag(endian) != DT_NULL)
        .enumerate()
        .filter(move |(_, e)| e.d_tag(endian) == DT_FLAGS_1 && e.d_val(endian) & DF_1_NODELETE.0 != 0)
        .map(|(i, _)| i)
}

/// The dynamic entries as the loader sees them: at the dynamic segment's virtual address in the
/// `PT_LOAD` segment that maps it, to the end of that segment's file bytes (glibc reads up to
/// `DT_NULL`, whatever `p_filesz` says); with the file offset of the first.
fn loaded_entries<'a>(
    phdrs: &[Phdr],
    dynamic: &Phdr,
    endian: Endianness,
    bytes: &'a [u8],
) -> Option<(usize, &'a [Entry])> {
    let vaddr = dynamic.p_vaddr(endian);
    let inside = |ph: &&Phdr| {
        ph.p_type(endian) == PT_LOAD
            && vaddr.checked_sub(ph.p_vaddr(endian)).is_some_and(|d| d < ph.p_filesz(endian))
    };
    // A later mapping replaces an earlier one.
    let load = phdrs.iter().rev().find(inside)?;
    let skip = usize::try_from(vaddr - load.p_vaddr(endian)).ok()?;
    let tail = load.data(endian, bytes).ok()?.get(skip..)?;
    let start = usize::try_from(load.p_offset(endian)).ok()?.checked_add(skip)?;
    let (entries, _) = object::pod::slice_from_bytes::<Entry>(tail, tail.len() / size_of::<Entry>()).ok()?;
    Some((start, entries))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::OnceLock;

    use object::elf::{
        DataEncoding, DF_1_NOW, DF_BIND_NOW, DT_DEBUG, DT_FLAGS, ELFCLASS64, ELFDATA2LSB, ELFDATA2MSB,
        ELFMAG, EM_X86_64, ET_DYN, EV_CURRENT, PT_NULL,
    };

    use super::*;
    use object::U64;

    /// This test executable: an object as the system's linker made it (PIE, so with a dynamic
    /// segment whose `DT_FLAGS_1` says `NOW PIE`, and not `NODELETE`).
    fn linked() -> &'static [u8] {
        static EXE: OnceLock<Vec<u8>> = OnceLock::new();
        EXE.get_or_init(|| std::fs::read(std::env::current_exe().unwrap()).unwrap())
    }

    /// The byte order of a header.
    fn endian_of(bytes: &[u8]) -> Endianness {
        Header::parse(bytes).unwrap().endian().unwrap()
    }

    /// The dynamic entries `(tag, value)` up to `DT_NULL`, read through `object`'s own view (the
    /// file offset of the last `PT_DYNAMIC`), not through the code under test; with the file
    /// offset of the first.
    fn entries(bytes: &[u8]) -> (usize, Vec<(i64, u64)>) {
        let header = Header::parse(bytes).unwrap();
        let endian = header.endian().unwrap();
        let phdrs = header.program_headers(endian, bytes).unwrap();
        let dynamic = phdrs.iter().rev().find(|ph| ph.p_type(endian) == PT_DYNAMIC).unwrap();
        let list = dynamic.dynamic(endian, bytes).unwrap().unwrap();
        let pairs =
            list.iter().map(|e| (e.d_tag(endian).0, e.d_val(endian))).take_while(|(t, _)| *t != 0).collect();
        (dynamic.p_offset(endian) as usize, pairs)
    }

    /// The index of the `DT_FLAGS_1` entry of `bytes`.
    fn flags_1_index(bytes: &[u8]) -> usize {
        let (_, list) = entries(bytes);
        list.iter().position(|(t, _)| *t == DT_FLAGS_1.0).expect("a DT_FLAGS_1 entry")
    }

    /// Rewrites entry `index` of the dynamic segment of `bytes`.
    fn edit_entry(bytes: &mut [u8], index: usize, edit: impl FnOnce(&mut Entry, Endianness)) {
        let (start, _) = entries(bytes);
        let endian = endian_of(bytes);
        let at = start + index * size_of::<Entry>();
        edit(object::pod::from_bytes_mut::<Entry>(&mut bytes[at..]).unwrap().0, endian);
    }

    /// `bytes` with `DF_1_NODELETE` added to its `DT_FLAGS_1`, as `-z nodelete` would set it.
    fn add_nodelete(mut bytes: Vec<u8>) -> Vec<u8> {
        let i = flags_1_index(&bytes);
        edit_entry(&mut bytes, i, |e, endian| e.d_val.set(endian, e.d_val.get(endian) | DF_1_NODELETE.0));
        bytes
    }

    /// Rewrites the program header of the last `PT_DYNAMIC` of `bytes`.
    fn edit_dynamic_header(bytes: &mut [u8], edit: impl FnOnce(&mut Phdr, Endianness)) {
        let header = Header::parse(&*bytes).unwrap();
        let endian = header.endian().unwrap();
        let (phoff, phnum) = (header.e_phoff.get(endian) as usize, header.e_phnum.get(endian) as usize);
        let all = object::pod::slice_from_bytes_mut::<Phdr>(&mut bytes[phoff..], phnum).unwrap().0;
        edit(all.iter_mut().rev().find(|ph| ph.p_type(endian) == PT_DYNAMIC).unwrap(), endian);
    }

    /// A minimal shared object built from `object`'s types: one `PT_LOAD` mapping the whole file
    /// and a `PT_DYNAMIC` inside it holding `DT_FLAGS` (`BIND_NOW`), `DT_FLAGS_1` with `flags_1`,
    /// `DT_NULL`, and after it a `DT_FLAGS_1` with `NODELETE` that the loader never reads.
    pub(crate) fn tiny(data: DataEncoding, flags_1: u64) -> Vec<u8> {
        let endian = if data == ELFDATA2MSB { Endianness::Big } else { Endianness::Little };
        let (header_len, phdr_len, entry_len) = (size_of::<Header>(), size_of::<Phdr>(), size_of::<Entry>());
        let dynamic_at = header_len + 2 * phdr_len;
        let len = dynamic_at + 4 * entry_len;
        let mut bytes = vec![0u8; len];
        let (header, rest) = object::pod::from_bytes_mut::<Header>(&mut bytes).unwrap();
        header.e_ident.magic = ELFMAG;
        (header.e_ident.class, header.e_ident.data, header.e_ident.version) = (ELFCLASS64, data, EV_CURRENT);
        header.e_type.set(endian, ET_DYN);
        header.e_machine.set(endian, EM_X86_64);
        header.e_version.set(endian, EV_CURRENT.0.into());
        header.e_phoff.set(endian, header_len as u64);
        header.e_ehsize.set(endian, header_len as u16);
        header.e_phentsize.set(endian, phdr_len as u16);
        header.e_phnum.set(endian, 2);
        let (phdrs, rest) = object::pod::slice_from_bytes_mut::<Phdr>(rest, 2).unwrap();
        let segments = [(PT_LOAD, 0, len), (PT_DYNAMIC, dynamic_at, 4 * entry_len)];
        for (ph, (kind, at, size)) in phdrs.iter_mut().zip(segments) {
            ph.p_type.set(endian, kind);
            (ph.p_offset, ph.p_vaddr, ph.p_paddr) =
                (U64::new(endian, at as u64), U64::new(endian, at as u64), U64::new(endian, at as u64));
            (ph.p_filesz, ph.p_memsz) = (U64::new(endian, size as u64), U64::new(endian, size as u64));
        }
        let (list, _) = object::pod::slice_from_bytes_mut::<Entry>(rest, 4).unwrap();
        let values =
            [(DT_FLAGS, DF_BIND_NOW.0), (DT_FLAGS_1, flags_1), (DT_NULL, 0), (DT_FLAGS_1, DF_1_NODELETE.0)];
        for (e, (tag, val)) in list.iter_mut().zip(values) {
            e.d_tag.set(endian, tag);
            e.d_val.set(endian, val);
        }
        bytes
    }

    #[test]
    fn clearing_changes_the_nodelete_bit_and_nothing_else() {
        let flagged = add_nodelete(linked().to_vec());
        assert!(matches!(scan(&flagged), Scan::Flagged(_, ref at) if at.len() == 1));
        let cleared = without_nodelete(&flagged).unwrap().expect("the flag is cleared");

        let (_, before) = entries(&flagged);
        let (_, after) = entries(&cleared);
        let i = flags_1_index(&flagged);
        assert_eq!(before.len(), after.len());
        for (n, (b, a)) in before.iter().zip(&after).enumerate() {
            if n == i {
                assert_eq!(b.0, a.0);
                assert_eq!(b.1 ^ a.1, DF_1_NODELETE.0, "only DF_1_NODELETE changes: {:#x} → {:#x}", b.1, a.1);
                assert_ne!(a.1, 0, "the other flags (NOW, PIE) stay");
            } else {
                assert_eq!(b, a, "entry {n} changed");
            }
        }
        let changed = flagged.iter().zip(&cleared).filter(|(b, a)| b != a).count();
        assert_eq!(changed, 1, "exactly one byte differs");
        assert!(cleared == linked(), "clearing gives back the object as it was linked without the flag");
        assert_eq!(scan(&cleared), Scan::Clean);
    }

    #[test]
    fn both_byte_orders_are_cleared_and_entries_after_dt_null_are_not_touched() {
        for data in [ELFDATA2LSB, ELFDATA2MSB] {
            let flagged = tiny(data, DF_1_NOW.0 | DF_1_NODELETE.0);
            let cleared = without_nodelete(&flagged).unwrap().expect("the flag is cleared");
            assert_eq!(cleared, tiny(data, DF_1_NOW.0), "{data:?}");
            // The entry after DT_NULL still says NODELETE: the loader never reads it.
            let last = cleared.len() - size_of::<Entry>();
            assert_eq!(cleared[last..], flagged[last..]);
        }
    }

    #[test]
    fn a_library_without_the_flag_is_left_as_it_is() {
        assert_eq!(without_nodelete(linked()), Ok(None));
        assert_eq!(without_nodelete(&tiny(ELFDATA2LSB, DF_1_NOW.0)), Ok(None));
        assert_eq!(without_nodelete(&tiny(ELFDATA2LSB, 0)), Ok(None));
    }

    #[test]
    fn without_dt_flags_1_or_a_dynamic_segment_there_is_nothing_to_do() {
        let mut no_flags_1 = tiny(ELFDATA2LSB, DF_1_NODELETE.0);
        let i = flags_1_index(&no_flags_1);
        edit_entry(&mut no_flags_1, i, |e, endian| e.d_tag.set(endian, DT_DEBUG));
        assert_eq!(without_nodelete(&no_flags_1), Ok(None));

        let mut no_dynamic = tiny(ELFDATA2LSB, DF_1_NODELETE.0);
        edit_dynamic_header(&mut no_dynamic, |ph, endian| ph.p_type.set(endian, PT_NULL));
        assert_eq!(without_nodelete(&no_dynamic), Ok(None));
    }

    #[test]
    fn a_flagged_dynamic_segment_the_loader_cannot_find_is_refused() {
        let mut bytes = tiny(ELFDATA2LSB, DF_1_NODELETE.0);
        edit_dynamic_header(&mut bytes, |ph, endian| ph.p_vaddr.set(endian, u64::MAX - 8));
        let e = without_nodelete(&bytes).unwrap_err();
        assert!(e.to_string().contains("DF_1_NODELETE") && e.to_string().contains("relink"), "{e}");
    }

    #[test]
    fn garbage_and_broken_objects_are_left_to_dlopen() {
        let flagged = tiny(ELFDATA2LSB, DF_1_NODELETE.0);
        let (dyn_start, _) = entries(&flagged);
        let mut class_32 = flagged.clone();
        class_32[4] = 1; // ELFCLASS32
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", Vec::new()),
            ("text", b"not a library at all".to_vec()),
            ("magic only", ELFMAG.to_vec()),
            ("header only", flagged[..size_of::<Header>()].to_vec()),
            ("cut before the dynamic segment", flagged[..dyn_start].to_vec()),
            ("32-bit", class_32),
        ];
        for (what, bytes) in cases {
            assert_eq!(without_nodelete(&bytes), Ok(None), "{what}");
        }
        // Every byte flipped in every bit, and every length: never a panic, whatever the answer.
        for at in 0..flagged.len() {
            for bit in 0..8 {
                let mut bytes = flagged.clone();
                bytes[at] ^= 1 << bit;
                let _ = without_nodelete(&bytes);
            }
            let _ = without_nodelete(&flagged[..at]);
        }
    }
}
