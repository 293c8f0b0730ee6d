// Static keys' sequence high-water marks, persisted ahead of the senders
// (docs/configuration.md §Static keys and restarts).
//
// A static key never changes, so its nonces (salt ‖ sequence) stay unique across restarts only
// if every start resumes above everything sent before. Each static TX key has one state file in
// local.state_dir, named "seq-" + 32 hex digits of SHA-256("p3 static sequence v1" ‖ key ‖ salt)
// (it names the key without revealing it), holding the key's mark: the highest sequence any of
// its lanes may send. The control thread writes the next mark (current + one block) before a
// lane comes within half a block of the current one (temp file, fsync, rename, fsync of the
// directory), and only then raises the lanes' limits (TxSlot::raise_seq_limit); a lane that
// reaches its limit first drops (seq_unreserved) rather than send a sequence not yet on disk.
// At start every lane of the key resumes at the mark + 1: a crash skips at most a block and a
// half of unsent sequences, never goes back. A fresh state directory starts at sequence 1.
//
// Control thread only: file I/O, never on a worker. Workers only expose their counters.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace p3::wire {
class SlotTable;
}

namespace p3::dp {

// Sequence numbers reserved per write: at 10 Mpps on one lane, about one write a second.
inline constexpr std::uint64_t kSeqBlock = std::uint64_t{1} << 24;
// A failed write is retried this often (the lanes meanwhile stop at their limit).
inline constexpr std::uint64_t kSeqRetryMs = 1000;

class SeqReserve {
public:
    // dir: local.state_dir (absolute); block: sequences reserved per write (tests use small ones).
    SeqReserve(std::string dir, std::uint64_t block) : dir_(std::move(dir)), block_(block ? block : kSeqBlock) {}

    struct Lease {
        std::uint64_t start_after = 0;   // the last sequence the lanes count as sent (the old mark)
        std::uint64_t limit = 0;         // the last they may send: the new mark, on disk already
    };
    // A static session's TX keys about to be installed: reads the key's mark (the directory is
    // created owner-only if missing), persists the first block above it and remembers the
    // session for poll(). nullopt when the state cannot be read or written (logged,
    // SEQ_STATE_UNUSABLE): the caller must not send under the key.
    std::optional<Lease> open(std::uint32_t sid, std::uint32_t remote_id, std::span<const std::uint8_t> key,
                              std::span<const std::uint8_t> salt);
    void close(std::uint32_t sid);   // the session's keys are gone
    // Every control-loop turn: a lane within half a block of its limit gets the next block,
    // persisted first, then its limit raised. Returns how many marks it wrote.
    unsigned poll(wire::SlotTable& slots, std::uint64_t now_ms);

    std::uint64_t block() const noexcept { return block_; }
    const std::string& dir() const noexcept { return dir_; }
    // The state file of a key (tests read it).
    static std::string file_name(std::span<const std::uint8_t> key, std::span<const std::uint8_t> salt);

private:
    struct Held {
        std::uint32_t sid;
        std::uint32_t remote_id;
        std::string name;
        std::uint64_t limit;
        std::uint64_t retry_ms = 0;
        bool failing = false;
    };
    bool check_dir(std::string& err);
    std::optional<std::uint64_t> read_mark(const std::string& name, std::string& err);
    bool write_mark(const std::string& name, std::uint64_t mark, std::string& err);

    std::string dir_;
    std::uint64_t block_;
    std::vector<Held> held_;
};

}  // namespace p3::dp
