// Secret bytes: key material, salts, pre-shared keys. Wiped (OPENSSL_cleanse) whenever the
// storage is released, deliberately without any formatting or streaming operator, so a
// secret cannot be printed by accident. Copy is explicit (clone()).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

namespace p3 {

// Overwrites memory in a way the compiler may not elide.
void secure_wipe(void* p, std::size_t n) noexcept;

class SecretBytes {
public:
    SecretBytes() noexcept = default;
    explicit SecretBytes(std::size_t n);
    explicit SecretBytes(std::span<const std::uint8_t> bytes);
    ~SecretBytes() { reset(); }

    SecretBytes(SecretBytes&& o) noexcept
        : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
    SecretBytes& operator=(SecretBytes&& o) noexcept {
        if (this != &o) {
            reset();
            data_ = std::exchange(o.data_, nullptr);
            size_ = std::exchange(o.size_, 0);
        }
        return *this;
    }
    SecretBytes(const SecretBytes&) = delete;
    SecretBytes& operator=(const SecretBytes&) = delete;

    SecretBytes clone() const { return SecretBytes(span()); }

    std::uint8_t* data() noexcept { return data_; }
    const std::uint8_t* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    std::span<const std::uint8_t> span() const noexcept { return {data_, size_}; }
    std::span<std::uint8_t> span() noexcept { return {data_, size_}; }

    // Wipes and frees.
    void reset() noexcept;

    // Constant-time comparison of contents (sizes are not secret).
    bool equals(std::span<const std::uint8_t> other) const noexcept;

private:
    std::uint8_t* data_ = nullptr;
    std::size_t size_ = 0;
};

}  // namespace p3
