//! A shared library's bytes seen as the loader would map them, without mapping them: virtual
//! addresses read through the `PT_LOAD` program headers, pointer fields resolved through the
//! dynamic relocations (`DT_RELA` and `DT_RELR`) that the loader would apply, and the dynamic
//! symbol table. Parsing is the `object` crate's; every read is bounded and checked, and a
//! malformed file gives an error, never a panic.

use object::elf::{
    FileHeader64, ProgramHeader64, Rela64, DT_NULL, DT_REL, DT_RELA, DT_RELASZ, DT_RELR, DT_RELRSZ, DT_RELSZ,
    ET_DYN, PT_DYNAMIC, PT_LOAD, SHT_DYNSYM,
};
use object::read::elf::{Dyn as _, FileHeader as _, ProgramHeader as _, Rela as _, Sym as _};
use object::{Endian as _, Endianness};

type Header = FileHeader64<Endianness>;
type Phdr = ProgramHeader64<Endianness>;

/// The most dynamic relocations a library may have: real plugins have a few thousand; the
/// bound keeps a crafted file from making the reader sort hundreds of megabytes.
const MAX_RELOCATIONS: usize = 1 << 22;

#[cfg(target_arch = "x86_64")]
mod arch {
    pub const MACHINE: object::elf::Machine = object::elf::EM_X86_64;
    pub const RELATIVE: object::elf::RelocationType = object::elf::R_X86_64_RELATIVE;
    pub const NAME: &str = "x86_64";
}
#[cfg(target_arch = "aarch64")]
mod arch {
    pub const MACHINE: object::elf::Machine = object::elf::EM_AARCH64;
    pub const RELATIVE: object::elf::RelocationType = object::elf::R_AARCH64_RELATIVE;
    pub const NAME: &str = "aarch64";
}

/// What the loader would store in a pointer-sized field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Target {
    /// Zero, and no relocation: a null pointer.
    Null,
    /// The library's own virtual address (a relative relocation).
    Local(u64),
    /// Bound to a symbol at load time (a function pointer may be).
    Symbolic,
}

/// One dynamic relocation from `DT_RELA`, by the address it patches.
#[derive(Clone, Copy, Debug)]
enum Rel {
    Relative(u64),
    Symbolic,
}

/// A library's bytes with its loaded segments and relocations.
pub(super) struct Image<'a> {
    bytes: &'a [u8],
    endian: Endianness,
    header: &'a Header,
    /// `(vaddr, filesz, offset)` of each `PT_LOAD`.
    loads: Vec<(u64, u64, u64)>,
    /// `DT_RELA` entries sorted by the address they patch.
    rela: Vec<(u64, Rel)>,
    /// `DT_RELR` as blocks: `(first address, bitmap of the words from there)`, ascending.
    relr: Vec<(u64, u64)>,
}

impl<'a> Image<'a> {
    /// Parses a 64-bit shared library of this machine and byte order.
    pub(super) fn parse(bytes: &'a [u8]) -> Result<Image<'a>, String> {
        let header = Header::parse(bytes).map_err(|_| "not a 64-bit ELF file".to_string())?;
        let endian = header.endian().map_err(|_| "its ELF byte order is unknown".to_string())?;
        if endian.is_little_endian() != cfg!(target_endian = "little") {
            return Err("its byte order is not this machine's".into());
        }
        if header.e_machine(endian) != arch::MACHINE {
            return Err(format!("it is not built for {}", arch::NAME));
        }
        if header.e_type(endian) != ET_DYN {
            return Err("it is not a shared library (ELF type is not DYN)".into());
        }
        let phdrs = header
            .program_headers(endian, bytes)
            .map_err(|_| "its program headers are malformed".to_string())?;
        let loads = phdrs
            .iter()
            .filter(|ph| ph.p_type(endian) == PT_LOAD)
            .map(|ph| (ph.p_vaddr(endian), ph.p_filesz(endian), ph.p_offset(endian)))
            .collect();
        let mut image = Image { bytes, endian, header, loads, rela: Vec::new(), relr: Vec::new() };
        image.read_relocations(phdrs)?;
        Ok(image)
    }

    /// The virtual address and size of the defined dynamic symbol `name`, if there is one.
    pub(super) fn dynamic_symbol(&self, name: &[u8]) -> Result<Option<(u64, u64)>, String> {
        let (e, b) = (self.endian, self.bytes);
        let sections = self.header.sections(e, b).map_err(|_| "its section headers are malformed")?;
        let symbols =
            sections.symbols(e, b, SHT_DYNSYM).map_err(|_| "its dynamic symbol table is malformed")?;
        for sym in symbols.iter() {
            if sym.is_undefined(e) || symbols.symbol_name(e, sym).ok() != Some(name) {
                continue;
            }
            return Ok(Some((sym.st_value(e), sym.st_size(e))));
        }
        Ok(None)
    }

    /// `len` bytes at virtual address `at`, from the file bytes of the `PT_LOAD` that maps
    /// them (the last one, as a later mapping replaces an earlier one).
    pub(super) fn bytes_at(&self, at: u64, len: u64) -> Result<&'a [u8], String> {
        let end = at.checked_add(len).ok_or_else(|| format!("address {at:#x} overflows"))?;
        let (vaddr, _, offset) = self
            .loads
            .iter()
            .rev()
            .find(|(v, filesz, _)| at >= *v && v.checked_add(*filesz).is_some_and(|e| end <= e))
            .ok_or_else(|| format!("{len} bytes at {at:#x} are not in the file's loaded segments"))?;
        let start = offset.checked_add(at - vaddr).and_then(|s| usize::try_from(s).ok());
        let range = start.and_then(|s| Some(s..s.checked_add(usize::try_from(len).ok()?)?));
        range
            .and_then(|r| self.bytes.get(r))
            .ok_or_else(|| format!("{len} bytes at {at:#x} are past the end of the file"))
    }

    /// The 64-bit word at `at`, as stored in the file.
    pub(super) fn word_at(&self, at: u64) -> Result<u64, String> {
        let b = self.bytes_at(at, 8)?;
        let raw: [u8; 8] = b.try_into().map_err(|_| "short word".to_string())?;
        Ok(if self.endian.is_little_endian() { u64::from_le_bytes(raw) } else { u64::from_be_bytes(raw) })
    }

    /// What the loader would store in the pointer field at `at`.
    pub(super) fn pointer_at(&self, at: u64) -> Result<Target, String> {
        if let Ok(i) = self.rela.binary_search_by_key(&at, |(a, _)| *a) {
            return Ok(match self.rela[i].1 {
                Rel::Relative(target) => Target::Local(target),
                Rel::Symbolic => Target::Symbolic,
            });
        }
        let word = self.word_at(at)?;
        if self.in_relr(at) {
            // RELR: the addend is the word in the file.
            return Ok(Target::Local(word));
        }
        if word == 0 {
            Ok(Target::Null)
        } else {
            Err(format!("the pointer at {at:#x} has no relocation, so it would not point into the library"))
        }
    }

    fn in_relr(&self, at: u64) -> bool {
        let i = self.relr.partition_point(|(start, _)| *start <= at);
        let Some((start, bits)) = i.checked_sub(1).map(|i| self.relr[i]) else {
            return false;
        };
        let d = at - start;
        d.is_multiple_of(8) && d / 8 < 64 && bits & (1 << (d / 8)) != 0
    }

    /// Reads `DT_RELA` and `DT_RELR` from the last `PT_DYNAMIC` (the one glibc uses).
    fn read_relocations(&mut self, phdrs: &[Phdr]) -> Result<(), String> {
        let e = self.endian;
        let Some(dynamic) = phdrs.iter().rev().find(|ph| ph.p_type(e) == PT_DYNAMIC) else {
            return Err("it has no dynamic segment".into());
        };
        let entries = dynamic
            .dynamic(e, self.bytes)
            .ok()
            .flatten()
            .ok_or_else(|| "its dynamic segment is malformed".to_string())?;
        let (mut rela, mut relr) = ((None, 0), (None, 0));
        for d in entries.iter().take_while(|d| d.d_tag(e) != DT_NULL) {
            let (tag, val) = (d.d_tag(e), d.d_val(e));
            match tag {
                t if t == DT_RELA => rela.0 = Some(val),
                t if t == DT_RELASZ => rela.1 = val,
                t if t == DT_RELR => relr.0 = Some(val),
                t if t == DT_RELRSZ => relr.1 = val,
                t if (t == DT_REL || t == DT_RELSZ) && val != 0 => {
                    return Err("it has REL relocations, which no 64-bit plugin linker writes".into())
                }
                _ => {}
            }
        }
        if let (Some(at), size) = rela {
            self.read_rela(at, size)?;
        }
        if let (Some(at), size) = relr {
            let words = self.bytes_at(at, size)?;
            self.relr = relr_blocks(words.chunks_exact(8).map(|c| self.word(c)))?;
        }
        Ok(())
    }

    fn word(&self, c: &[u8]) -> u64 {
        let raw: [u8; 8] = c.try_into().unwrap_or_default();
        if self.endian.is_little_endian() {
            u64::from_le_bytes(raw)
        } else {
            u64::from_be_bytes(raw)
        }
    }

    fn read_rela(&mut self, at: u64, size: u64) -> Result<(), String> {
        let e = self.endian;
        let table = self.bytes_at(at, size)?;
        let n = table.len() / size_of::<Rela64<Endianness>>();
        if n > MAX_RELOCATIONS {
            return Err(format!("it has {n} dynamic relocations, over the limit of {MAX_RELOCATIONS}"));
        }
        let (entries, _) = object::pod::slice_from_bytes::<Rela64<Endianness>>(table, n)
            .map_err(|_| "its RELA table is malformed".to_string())?;
        self.rela = entries
            .iter()
            .map(|r| {
                let kind = if r.r_type(e, false) == arch::RELATIVE {
                    Rel::Relative(r.r_addend(e) as u64)
                } else {
                    Rel::Symbolic
                };
                (r.r_offset(e), kind)
            })
            .collect();
        self.rela.sort_by_key(|(a, _)| *a);
        Ok(())
    }
}

/// Decodes packed relative relocations (`DT_RELR`): an even word is an address to relocate
/// (and the next one starts after it); an odd word is a bitmap of the 63 words from there.
/// Returns blocks `(first address, bitmap)` in ascending order, as the format requires.
pub(super) fn relr_blocks(words: impl Iterator<Item = u64>) -> Result<Vec<(u64, u64)>, String> {
    let mut blocks: Vec<(u64, u64)> = Vec::new();
    let mut next: Option<u64> = None;
    for w in words {
        let block = if w & 1 == 0 {
            next = w.checked_add(8);
            (w, 1)
        } else {
            let base = next.ok_or("its RELR table starts with a bitmap")?;
            next = base.checked_add(63 * 8);
            (base, w >> 1)
        };
        if blocks.last().is_some_and(|(last, _)| *last >= block.0) || next.is_none() {
            return Err("its RELR table is not in ascending order".into());
        }
        blocks.push(block);
    }
    Ok(blocks)
}
