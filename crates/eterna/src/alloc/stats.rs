//! Allocator statistics. One macro list generates the counter struct and its names, so a
//! counter is declared once and appears in `stats --json` automatically.

macro_rules! counters {
    ($($name:ident: $doc:literal,)*) => {
        /// A snapshot of the allocator's counters; the keys of `eterna stats --json`.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct Stats {
            $(#[doc = $doc] pub $name: u64,)*
            /// Per size class: block size, pools in use, live and free blocks.
            pub size_classes: Vec<ClassStats>,
            /// Processes whose snapshots pin a state: (pid, oldest pinned transaction).
            pub reader_list: Vec<(u64, u64)>,
        }

        impl Stats {
            /// Every counter's name and value, in declaration order.
            pub fn counters(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name)),*]
            }
        }
    };
}

counters! {
    arenas_allocated_total: "Arenas ever taken into use (a reused arena counts again).",
    arenas_reclaimed: "Arenas ever given back to the filesystem.",
    arenas_highwater: "Most arenas in use at once.",
    arenas_current: "Arenas in use now.",
    pools_current: "Small pools holding at least one live block.",
    pools_spare: "Empty small pools whose disk blocks are kept as spare.",
    pools_allocated_total: "Small pools ever taken into use.",
    pools_reclaimed: "Small pools ever punched out of the file.",
    blocks_live: "Live blocks of every size.",
    bytes_live: "Bytes in live blocks (block sizes, not requested sizes).",
    bytes_free: "Bytes inside in-use pools and large arenas that hold no live block.",
    large_runs: "Live page runs (objects of 513 bytes to one arena).",
    huge_objects: "Live objects spanning whole arenas.",
    file_bytes: "Logical size of the file.",
    disk_bytes: "Bytes the file occupies on disk (st_blocks * 512).",
    txn_id: "Transaction id of the state last published.",
    readers: "Processes whose snapshots pin a state (listed in reader_list).",
    blocks_pending: "Replaced blocks not yet reused: they wait for readers to move on and are freed in batches (known to the writing process).",
    spare_target: "Empty pools the spare policy currently keeps.",
    releases: "Release passes run (each punches what the spare policy gives back).",
    gc_collections: "Collections ever run (compactions included).",
    gc_compactions: "Compactions ever run.",
    gc_bytes_freed: "Bytes collections and compactions have freed (garbage and moved objects' old blocks).",
}

/// Counters of one size class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassStats {
    pub size: u64,        // block size in bytes
    pub pools: u64,       // pools of this class in use
    pub blocks_live: u64, // live blocks
    pub blocks_free: u64, // free blocks in this class's pools
}

impl Stats {
    /// The counters as one JSON object, as `eterna stats --json` prints it.
    pub fn to_json(&self) -> String {
        let mut s = String::from("{");
        for (name, v) in self.counters() {
            s.push_str(&format!("\"{name}\":{v},"));
        }
        s.push_str("\"size_classes\":[");
        let classes: Vec<String> = self
            .size_classes
            .iter()
            .map(|c| {
                format!(
                    "{{\"size\":{},\"pools\":{},\"blocks_live\":{},\"blocks_free\":{}}}",
                    c.size, c.pools, c.blocks_live, c.blocks_free
                )
            })
            .collect();
        s.push_str(&classes.join(","));
        s.push_str("],\"reader_list\":[");
        let readers: Vec<String> =
            self.reader_list.iter().map(|(pid, txn)| format!("{{\"pid\":{pid},\"txn\":{txn}}}")).collect();
        s.push_str(&readers.join(","));
        s.push_str("]}");
        s
    }
}
