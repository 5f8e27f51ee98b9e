"""initial schema

Revision ID: 830c49af685d
Revises: 
Create Date: 2026-11-25 05:15:03.335410
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '830c49af685d'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create lists, subscribers, subscriptions, issues, the delivery ledger and suppressions."""
    op.create_table('mailing_list',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('slug', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('from_address', sa.String(length=320), nullable=False),
    sa.Column('reply_to', sa.String(length=320), nullable=True),
    sa.Column('postal_address', sa.Text(), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mailing_list')),
    sa.UniqueConstraint('slug', name=op.f('uq_mailing_list_slug'))
    )
    op.create_table('rate_limit_counter',
    sa.Column('key', sa.String(length=400), nullable=False),
    sa.Column('window_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('key', 'window_start', name=op.f('pk_rate_limit_counter'))
    )
    op.create_table('subscriber',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('display_email', sa.String(length=320), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('erased_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subscriber')),
    sa.UniqueConstraint('email', name=op.f('uq_subscriber_email'))
    )
    op.create_table('suppression',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('reason', sa.Enum('hard_bounce', 'soft_bounces', 'complaint', 'manual', 'ses_list', name='suppressionreason', native_enum=False, length=20), nullable=False),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_suppression')),
    sa.UniqueConstraint('email', name=op.f('uq_suppression_email'))
    )
    op.create_table('user_account',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_login_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_account')),
    sa.UniqueConstraint('email', name=op.f('uq_user_account_email'))
    )
    op.create_table('confirmation_email',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subscriber_id', sa.Integer(), nullable=False),
    sa.Column('list_id', sa.Integer(), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['list_id'], ['mailing_list.id'], name=op.f('fk_confirmation_email_list_id_mailing_list'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscriber.id'], name=op.f('fk_confirmation_email_subscriber_id_subscriber'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_confirmation_email'))
    )
    with op.batch_alter_table('confirmation_email', schema=None) as batch_op:
        batch_op.create_index('ix_confirmation_email_subscriber_sent', ['subscriber_id', 'sent_at'], unique=False)

    op.create_table('issue',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('list_id', sa.Integer(), nullable=False),
    sa.Column('slug', sa.String(length=200), nullable=False),
    sa.Column('title', sa.String(length=500), nullable=False),
    sa.Column('subject', sa.String(length=500), nullable=False),
    sa.Column('issue_date', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.Enum('draft', 'scheduled', 'sending', 'paused', 'sent', 'cancelled', name='issuestatus', native_enum=False, length=20), nullable=False),
    sa.Column('source_yaml', sa.Text(), nullable=False),
    sa.Column('compiled_html', sa.Text(), nullable=False),
    sa.Column('compiled_text', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('scheduled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('paused_reason', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['list_id'], ['mailing_list.id'], name=op.f('fk_issue_list_id_mailing_list')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_issue')),
    sa.UniqueConstraint('list_id', 'slug', name=op.f('uq_issue_list_id'))
    )
    with op.batch_alter_table('issue', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_issue_list_id'), ['list_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_issue_status'), ['status'], unique=False)

    op.create_table('subscription',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subscriber_id', sa.Integer(), nullable=False),
    sa.Column('list_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('pending', 'active', 'unsubscribed', 'bounced', 'complained', name='subscriptionstatus', native_enum=False, length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status_changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('unsubscribed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('consent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('consent_ip', sa.String(length=45), nullable=True),
    sa.Column('consent_form', sa.String(length=500), nullable=True),
    sa.Column('confirm_nonce', sa.String(length=32), nullable=True),
    sa.ForeignKeyConstraint(['list_id'], ['mailing_list.id'], name=op.f('fk_subscription_list_id_mailing_list'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscriber.id'], name=op.f('fk_subscription_subscriber_id_subscriber'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subscription')),
    sa.UniqueConstraint('subscriber_id', 'list_id', name=op.f('uq_subscription_subscriber_id'))
    )
    with op.batch_alter_table('subscription', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subscription_list_id'), ['list_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_subscription_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_subscription_subscriber_id'), ['subscriber_id'], unique=False)

    op.create_table('delivery',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('issue_id', sa.Integer(), nullable=False),
    sa.Column('subscriber_id', sa.Integer(), nullable=False),
    sa.Column('subscription_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.Enum('queued', 'sending', 'sent', 'delivered', 'failed', 'suppressed', 'unknown', 'bounced', 'complained', name='deliverystatus', native_enum=False, length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('claimed_by', sa.String(length=100), nullable=True),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('retry_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ses_message_id', sa.String(length=200), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['issue_id'], ['issue.id'], name=op.f('fk_delivery_issue_id_issue'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscriber.id'], name=op.f('fk_delivery_subscriber_id_subscriber'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscription.id'], name=op.f('fk_delivery_subscription_id_subscription'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_delivery')),
    sa.UniqueConstraint('issue_id', 'subscriber_id', name=op.f('uq_delivery_issue_id')),
    sa.UniqueConstraint('ses_message_id', name=op.f('uq_delivery_ses_message_id'))
    )
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.create_index('ix_delivery_issue_status', ['issue_id', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_delivery_subscriber_id'), ['subscriber_id'], unique=False)

    op.create_table('subscription_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subscription_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('pending', 'active', 'unsubscribed', 'bounced', 'complained', name='subscriptionstatus', native_enum=False, length=20), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.String(length=64), nullable=False),
    sa.Column('ip', sa.String(length=45), nullable=True),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscription.id'], name=op.f('fk_subscription_event_subscription_id_subscription'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subscription_event'))
    )
    with op.batch_alter_table('subscription_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subscription_event_subscription_id'), ['subscription_id'], unique=False)



def downgrade() -> None:
    """Drop every table."""
    with op.batch_alter_table('subscription_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subscription_event_subscription_id'))

    op.drop_table('subscription_event')
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_delivery_subscriber_id'))
        batch_op.drop_index('ix_delivery_issue_status')

    op.drop_table('delivery')
    with op.batch_alter_table('subscription', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subscription_subscriber_id'))
        batch_op.drop_index(batch_op.f('ix_subscription_status'))
        batch_op.drop_index(batch_op.f('ix_subscription_list_id'))

    op.drop_table('subscription')
    with op.batch_alter_table('issue', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_issue_status'))
        batch_op.drop_index(batch_op.f('ix_issue_list_id'))

    op.drop_table('issue')
    with op.batch_alter_table('confirmation_email', schema=None) as batch_op:
        batch_op.drop_index('ix_confirmation_email_subscriber_sent')

    op.drop_table('confirmation_email')
    op.drop_table('user_account')
    op.drop_table('suppression')
    op.drop_table('subscriber')
    op.drop_table('rate_limit_counter')
    op.drop_table('mailing_list')
