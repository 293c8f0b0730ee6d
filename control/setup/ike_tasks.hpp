// The exchange as tasks (after strongSwan's task_t): each task owns one concern of an
// exchange and contributes to both of its messages. For a request/response pair the engine
// calls, over the exchange's task list in order:
//   initiator: build_i (request)  ...  process_i (response)
//   responder: process_r (request) ... build_r (response)
// A task keeps its state in the IkeSa, so tasks are rebuilt per message.
//
//   IKE_SA_INIT: IkeInit (SA, KE, Nonce, COOKIE, INVALID_KE, key schedule), Natd (NAT-D)
//   IKE_AUTH:    IkeAuth (IDi/IDr, CERT, AUTH), ChildCreate (ESP SA whose SPI is a P3 ID,
//                TSi/TSr), ConfigPush (the private-use notify with the secondary's parameters)
#pragma once

#include <memory>
#include <vector>

#include "control/setup/ike_sa.hpp"

namespace p3::setup {

class Task {
public:
    explicit Task(const TaskContext& ctx) : ctx_(ctx) {}
    virtual ~Task() = default;
    virtual const char* name() const = 0;
    virtual TaskResult build_i(IkeSa&, Message&) { return {}; }
    virtual TaskResult process_r(IkeSa&, const Message&) { return {}; }
    virtual TaskResult build_r(IkeSa&, Message&) { return {}; }
    virtual TaskResult process_i(IkeSa&, const Message&) { return {}; }

protected:
    const TaskContext& ctx_;
};

std::vector<std::unique_ptr<Task>> make_tasks(Exchange ex, const TaskContext& ctx);

// Key schedule (RFC 7296 §2.14): SKEYSEED = prf(Ni | Nr, g^ir);
// {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)
// (SK_a* are empty: AES-GCM is an AEAD). Sets the keys in sa.
bool derive_ike_keys(IkeSa& sa, const SecretBytes& shared);
// The same split from a given SKEYSEED (an IKE SA rekey: SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr), §2.18).
bool derive_ike_keys_from(IkeSa& sa, const SecretBytes& skeyseed);

// KEYMAT = prf+(SK_d, Ni | Nr) (§2.17), split as documented in setup-exchange.md:
// data i->r | data r->i | control i->r | control r->i, each key (K bytes) then salt (4).
bool derive_session_keys(const IkeSa& sa, EstablishedSession& s);

// RFC 7296 §2.10: at least 16 bytes and half the PRF's key size.
bool nonce_ok_for(std::uint16_t prf_alg, const Bytes& nonce);

Bytes natd_hash(Spi spi_i, Spi spi_r, const Endpoint& ep);

}  // namespace p3::setup
