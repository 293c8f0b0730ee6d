#include "common/secret.hpp"

#include <openssl/crypto.h>

#include <cstring>

namespace p3 {

void secure_wipe(void* p, std::size_t n) noexcept {
    if (p && n) OPENSSL_cleanse(p, n);
}

SecretBytes::SecretBytes(std::size_t n) : data_(n ? new std::uint8_t[n]() : nullptr), size_(n) {}

SecretBytes::SecretBytes(std::span<const std::uint8_t> bytes) : SecretBytes(bytes.size()) {
    if (size_) std::memcpy(data_, bytes.data(), size_);
}

void SecretBytes::reset() noexcept {
    if (data_) {
        secure_wipe(data_, size_);
        delete[] data_;
    }
    data_ = nullptr;
    size_ = 0;
}

bool SecretBytes::equals(std::span<const std::uint8_t> other) const noexcept {
    if (other.size() != size_) return false;
    return size_ == 0 || CRYPTO_memcmp(data_, other.data(), size_) == 0;
}

}  // namespace p3
