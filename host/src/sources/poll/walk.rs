//! Walking a list that an API serves newest first, by page number, with no
//! server-side time filter (authentik's events list is one): which page to
//! fetch, where a walk stops, and the cursor that makes a restart resume
//! without loss.
//!
//! The cursor has two parts:
//! - `high`: every event at or before this key is stored;
//! - `walk`: a walk that stopped at the per-tick page cap before it reached
//!   `high`. The events between its top and its frontier are stored; the gap
//!   below the frontier is walked first on the next tick, before anything new.
//!
//! Each page's events are written together with the cursor that covers them
//! (one commit in the embedded store), so a crash between pages leaves a
//! cursor that describes exactly what is stored.
//!
//! Pages shift while new events arrive or old ones are deleted. The walk
//! keeps the position of its first unread item (`offset`, counted from the
//! top when the list held `total` items). That item moves by (items inserted
//! above it) − (items deleted above it). The API inserts at the top (authentik
//! sets `created` when it saves an event), so the change of the list's total
//! between two pages is a lower bound on that move: the walk always fetches
//! the page holding the earliest place the item can be now. Growth makes it
//! jump over pages it has read; deletions make it step back; neither skips an
//! item. Items read twice are deduplicated by the store on their external id.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// A position in the list: creation time, then the event's id for ties.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    /// When the event was created.
    pub at: DateTime<Utc>,
    /// Its external id.
    pub id: String,
}

/// The stored cursor of a poll source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Everything at or before this key is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<Key>,
    /// Never ingest events older than this (the first-run policy), fixed on the first tick.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<DateTime<Utc>>,
    /// A walk cut short by the page cap, to finish before starting a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub walk: Option<Walk>,
}

impl crate::store::CheckpointState for Cursor {
    const KIND: &'static str = "poll";
    const VERSION: u32 = 1;
}

/// A walk down the list, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Walk {
    /// The walk ends at the first event older than this.
    pub stop_before: Option<DateTime<Utc>>,
    /// The newest event seen by this walk; becomes `high` when the walk ends.
    pub top: Option<Key>,
    /// Position of the first unread item, from the top (0-based), when the
    /// list held `total` items.
    pub offset: u64,
    /// The list's total when `offset` was taken, if the API reports one.
    pub total: Option<u64>,
    /// Items per page the API actually serves (it may clamp what was asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u32>,
    /// The stored `high` when the walk began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known: Option<Key>,
    /// The walk has met `known`: what remains is the overlap window, re-read
    /// only for late commits, so the page cap ends the walk there instead of
    /// carrying it over (a busy window would otherwise be re-read forever).
    #[serde(default)]
    pub past_known: bool,
}

impl Cursor {
    /// The walk to continue, or a new one from page 1 down to `high` minus the
    /// overlap window (late commits) and never below the floor.
    pub fn begin(&self, overlap: Duration) -> Walk {
        if let Some(walk) = &self.walk {
            return walk.clone();
        }
        let from_high = self.high.as_ref().map(|h| h.at - overlap);
        Walk {
            stop_before: from_high.max(self.floor),
            top: None,
            offset: 0,
            total: None,
            page_size: None,
            known: self.high.clone(),
            past_known: false,
        }
    }

    /// The cursor after a page of `walk` was processed (the walk already
    /// advanced); `ended` when the walk reached known ground or the list's end.
    pub fn after_page(&self, walk: &Walk, ended: bool) -> Cursor {
        if ended {
            Cursor {
                high: self.high.clone().max(walk.top.clone()),
                floor: self.floor,
                walk: None,
            }
        } else {
            Cursor {
                high: self.high.clone(),
                floor: self.floor,
                walk: Some(walk.clone()),
            }
        }
    }
}

impl Walk {
    /// The earliest place the first unread item can be in a list that now
    /// holds `total` items.
    fn offset_in(&self, total: Option<u64>) -> u64 {
        match (self.total, total) {
            (Some(then), Some(now)) => (self.offset as i64 + (now as i64 - then as i64)).max(0) as u64,
            _ => self.offset,
        }
    }

    /// The page holding the first unread item, as far as the walk knows.
    pub fn next_page(&self, page_size: u32) -> u32 {
        page_of(self.offset, page_size)
    }

    /// Page `page` of a list of `total` items was processed: everything above
    /// its end has been read.
    pub fn advance(&mut self, page: u32, total: Option<u64>, page_size: u32) {
        self.offset = u64::from(page) * u64::from(page_size.max(1));
        self.total = total;
        self.page_size = Some(page_size);
    }
}

fn page_of(offset: u64, page_size: u32) -> u32 {
    (offset / u64::from(page_size.max(1)) + 1).min(u64::from(u32::MAX)) as u32
}

/// What to do with a page that was just fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// The page holds the first unread item: process it.
    Process,
    /// The list changed since the walk's last page: fetch this page instead.
    Fetch(u32),
}

/// Page `fetched` arrived while the list held `total` items; decide whether it
/// holds the first unread item.
pub fn plan(walk: &Walk, fetched: u32, total: Option<u64>, page_size: u32) -> Plan {
    let wanted = page_of(walk.offset_in(total), page_size);
    if wanted == fetched {
        Plan::Process
    } else {
        Plan::Fetch(wanted)
    }
}

/// The API answered "no such page" for `fetched`: the list ends before it,
/// unless the walk expected the page to exist, in which case the list shrank
/// and the page before it is tried (its total says where to go from there).
pub fn past_the_end(walk: &Walk, fetched: u32) -> Option<u32> {
    let expected = walk.total.is_some_and(|t| walk.offset < t);
    (expected && fetched > 1).then_some(fetched - 1)
}

/// The events of one page that are new for this walk, and whether the walk
/// ended on this page. `keys` are the page's events (any order); an event
/// without a usable time or id is always kept and never ends the walk.
pub fn select(walk: &mut Walk, keys: &[Option<Key>], last_page: bool) -> (Vec<bool>, bool) {
    let mut ended = last_page || keys.is_empty();
    let keep = keys
        .iter()
        .map(|key| match key {
            Some(k) if walk.stop_before.is_some_and(|stop| k.at < stop) => {
                ended = true;
                false
            }
            Some(k) => {
                if walk.known.as_ref().is_some_and(|known| k <= known) {
                    walk.past_known = true;
                }
                if walk.top.as_ref().is_none_or(|t| k > t) {
                    walk.top = Some(k.clone());
                }
                true
            }
            None => true,
        })
        .collect();
    (keep, ended)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secs: i64, id: &str) -> Key {
        Key {
            at: DateTime::from_timestamp(secs, 0).unwrap(),
            id: id.into(),
        }
    }

    fn walk_at(offset: u64, total: u64) -> Walk {
        Walk {
            stop_before: None,
            top: None,
            offset,
            total: Some(total),
            page_size: None,
            known: None,
            past_known: false,
        }
    }

    #[test]
    fn the_walk_fetches_the_page_where_its_first_unread_item_can_be_now() {
        // 200 read of 1000: the next unread item is the first of page 3.
        let w = walk_at(200, 1000);
        assert_eq!(w.next_page(100), 3);
        assert_eq!(plan(&w, 3, Some(1000), 100), Plan::Process);
        assert_eq!(plan(&w, 3, Some(1099), 100), Plan::Process, "it moved within page 3");
        assert_eq!(plan(&w, 3, Some(1250), 100), Plan::Fetch(5), "pages 3 and 4 were read");
        assert_eq!(
            plan(&w, 3, Some(999), 100),
            Plan::Fetch(2),
            "one deletion above may move it up"
        );
        assert_eq!(plan(&w, 3, Some(500), 100), Plan::Fetch(1));
        assert_eq!(plan(&walk_at(230, 1000), 3, Some(970), 100), Plan::Process);
    }

    #[test]
    fn a_missing_page_ends_the_list_unless_the_walk_expected_it() {
        assert_eq!(past_the_end(&walk_at(200, 200), 3), None);
        assert_eq!(past_the_end(&walk_at(200, 201), 3), Some(2));
        assert_eq!(
            past_the_end(
                &Walk {
                    total: None,
                    ..walk_at(0, 0)
                },
                1
            ),
            None
        );
    }

    #[test]
    fn a_walk_stops_at_known_ground_and_remembers_its_top() {
        let stored = Cursor {
            high: Some(key(1000, "a")),
            ..Cursor::default()
        };
        let mut w = stored.begin(Duration::seconds(60));
        assert_eq!(w.stop_before, Some(key(940, "").at));
        let (keep, ended) = select(&mut w, &[Some(key(1200, "c")), None, Some(key(950, "b"))], false);
        assert_eq!((keep, ended), (vec![true, true, true], false));
        assert!(
            w.past_known,
            "950 is at or before the stored 1000: only the overlap is left"
        );
        let (keep, ended) = select(&mut w, &[Some(key(945, "x")), Some(key(900, "old"))], false);
        assert_eq!((keep, ended), (vec![true, false], true));
        let next = stored.after_page(&w, true);
        assert_eq!(next.high, Some(key(1200, "c")));
        assert_eq!(next.walk, None);
    }

    #[test]
    fn a_capped_walk_is_resumed_before_a_new_one_starts() {
        let w = Walk {
            top: Some(key(5, "t")),
            ..walk_at(1000, 5000)
        };
        let c = Cursor::default().after_page(&w, false);
        assert_eq!(c.high, None);
        assert_eq!(c.begin(Duration::seconds(300)), w);
    }

    #[test]
    fn the_floor_bounds_the_first_walk() {
        let floor = key(500, "").at;
        let c = Cursor {
            floor: Some(floor),
            ..Cursor::default()
        };
        assert_eq!(c.begin(Duration::seconds(300)).stop_before, Some(floor));
        let ended = c.after_page(&c.begin(Duration::seconds(300)), true);
        assert_eq!(
            ended.floor,
            Some(floor),
            "an empty first walk keeps the first-run policy"
        );
    }
}
